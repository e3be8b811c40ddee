"""Agents search the mailbox: ``search_mailbox`` against Dovecot, ``spacebot search``,
and a ``command`` agent's program running ``$SPACEBOT_SEARCH`` during a bot run."""

from __future__ import annotations

import contextlib
import email
import imaplib
import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import policy
from email.utils import format_datetime
from pathlib import Path

import pytest
from email_setup import instance_keys, run_bot_once, write_config

from spacebot_core.adapter import Adapter
from spacebot_core.cli import main
from spacebot_core.config import load_config
from spacebot_core.convert import (
    search_hits_from_data,
    search_hits_to_data,
    search_query_from_data,
    search_query_to_data,
)
from spacebot_core.errors import SearchError
from spacebot_core.instance_hooks import InstanceHooks
from spacebot_core.plugins import load_plugins
from spacebot_core.runtime import build_adapter
from spacebot_core.tools import NO_TOOLS, AgentTools
from spacebot_core.types import SearchHit, SearchQuery
from spacebot_email.search import imap_date, search_arguments, snippet
from spacebot_email.testing import Account, CertFiles, DovecotServer, SmtpRelay
from tests.core_fixtures import make_folder, run_cli, single_folder_config
from tests.core_fixtures import write_config as write_folder_config

pytest_plugins = ["tests.core_fixtures"]

TODAY = date(2024, 3, 20)


def mail(sender: str, subject: str, body: str, day: int, month: int = 3) -> bytes:
    """A plain mail to the bot, dated ``day``.``month``.2024 at noon UTC."""
    message = email.message.EmailMessage()
    message["From"] = sender
    message["To"] = "bot@example.com"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2024, month, day, 12, tzinfo=UTC))
    message["Message-ID"] = f"<{month}-{day}@example.com>"
    message.set_content(body)
    return message.as_bytes()


#: (folder, seen, mail): the mailbox most tests search.
MAILBOX = [
    ("INBOX", False, mail("Alice <alice@example.com>", "Invoice 1001", "Please pay 1001.", 1)),
    ("INBOX", False, mail("bob@example.org", "Lunch?", "Noon? The invoice can wait.", 5)),
    ("INBOX", True, mail("Alice <alice@example.com>", "Weekend plans", "Hiking Saturday.", 10)),
    ("Archive", True, mail("Alice <alice@example.com>", "Invoice 1000", "Old, paid.", 1, 2)),
    ("Archive", False, mail("carol@example.net", "Re: Invoice 1001", "Paid it.", 7)),
]


def fill(dovecot: DovecotServer, bot: Account, mails: list[tuple[str, bool, bytes]]) -> None:
    """Store each mail in its folder (created as needed), seen or not."""
    for folder in sorted({folder for folder, _, _ in mails} - {"INBOX"}):
        dovecot.create_folder(bot, folder)
    for folder, seen, raw in mails:
        dovecot.append(bot, folder, raw, flags=["\\Seen"] if seen else [])


def email_config(
    tmp_path: Path,
    dovecot: DovecotServer,
    relay: SmtpRelay,
    bot: Account,
    certs: CertFiles,
    extra: str = "",
    folders: str = '["INBOX", "Archive"]',
) -> Path:
    """One email instance, searching INBOX and Archive unless told otherwise."""
    keys = instance_keys(dovecot, relay, bot, certs)
    return write_config(tmp_path, f"[messaging.email]\n{keys}folders = {folders}\n{extra}")


@contextlib.contextmanager
def tools_of(config_path: Path) -> Iterator[AgentTools]:
    """The agent tools of the config's first instance, as the runtime builds them."""
    host = load_plugins()
    config = load_config(config_path, host.adapter_classes(), host.agent_classes())
    [instance] = config.instances
    adapter = build_adapter(instance, host, config)
    host.register_instance(adapter)
    host.check_hooks()
    yield AgentTools.for_instance(
        InstanceHooks(adapter, host.manager, config_path=config.path), instance.channel
    )


@pytest.fixture
def mailbox(tmp_path, dovecot, mail_accounts, smtp_relay, certs) -> Iterator[AgentTools]:
    """The tools of an instance whose mailbox holds :data:`MAILBOX`."""
    fill(dovecot, mail_accounts.bot, MAILBOX)
    config = email_config(tmp_path, dovecot, smtp_relay, mail_accounts.bot, certs)
    with tools_of(config) as tools:
        yield tools


async def subjects(tools: AgentTools, **query: object) -> list[str]:
    return [hit.subject for hit in await tools.search_mailbox(SearchQuery(**query))]


def seen_flags(dovecot: DovecotServer, bot: Account) -> dict[str, list[bool]]:
    return {
        folder: [stored.seen for stored in dovecot.fetch_all(bot, folder)]
        for folder in ("INBOX", "Archive")
    }


# -- the pure part: what goes on the wire ----------------------------------------------


def test_values_are_quoted_with_backslash_and_quote_escaped() -> None:
    query = SearchQuery(text='say "hi"', sender="a\\b", subject='") OR ALL ("')

    assert search_arguments(query, TODAY) == (
        'UNDELETED TEXT "say \\"hi\\"" FROM "a\\\\b" SUBJECT "\\") OR ALL (\\""'
    )


def test_non_ascii_and_line_breaks_go_in_literals_with_charset() -> None:
    query = SearchQuery(subject="Grüße", text="one\r\nA1 LOGOUT")

    assert search_arguments(query, TODAY) == (
        "CHARSET UTF-8 UNDELETED TEXT {14+}\r\none\r\nA1 LOGOUT SUBJECT {7+}\r\nGrüße"
    )


def test_without_literal_plus_a_line_break_becomes_a_space() -> None:
    query = SearchQuery(subject="Grüße", text="one\r\nA1 LOGOUT")

    assert search_arguments(query, TODAY, literals=False) == (
        'CHARSET UTF-8 UNDELETED TEXT "one  A1 LOGOUT" SUBJECT "Grüße"'
    )


def test_unread_and_since_days_are_unseen_and_since_a_date() -> None:
    query = SearchQuery(unread_only=True, since_days=20)

    assert search_arguments(query, TODAY) == "UNDELETED UNSEEN SINCE 29-Feb-2024"
    assert [imap_date(date(2024, month, 1))[2:] for month in (1, 12)] == ["Jan-2024", "Dec-2024"]


def test_an_empty_query_finds_everything_not_deleted() -> None:
    assert search_arguments(SearchQuery(), TODAY) == "UNDELETED"


def test_the_text_of_a_hit_is_short_and_on_one_line() -> None:
    assert snippet("a\n\n b  c") == "a b c"
    assert len(snippet("word " * 200)) == 300


@pytest.mark.parametrize("limit", [0, 51, -1])
def test_a_limit_outside_1_to_50_is_refused(limit: int) -> None:
    with pytest.raises(SearchError, match="limit must be a whole number from 1 to 50"):
        SearchQuery(limit=limit)


async def test_a_bad_tool_call_is_an_error_the_model_can_read() -> None:
    calls = [
        ("search_mailbox", {"limit": 51}, "limit must be a whole number from 1 to 50, not 51"),
        ("search_mailbox", {"limit": "5"}, "argument 'limit' must be a whole number"),
        ("search_mailbox", {"unread_only": "yes"}, "argument 'unread_only' must be true or false"),
        ("search_mailbox", {"to": "x"}, "unknown argument(s) to; search_mailbox takes: text"),
        ("search_mailbox", ["invoice"], "must be a JSON object"),
        ("delete_everything", {}, "unknown tool 'delete_everything'"),
        ("search_mailbox", {"text": "x"}, "no channel to search"),
    ]
    for name, arguments, error in calls:
        result = await NO_TOOLS.call(name, arguments)
        assert error in result["error"], (name, arguments, result)


async def test_a_channel_without_search_says_so() -> None:
    host = load_plugins()
    adapter = Adapter("quiet", {})
    host.register_instance(adapter)
    tools = AgentTools.for_instance(InstanceHooks(adapter, host.manager), "quiet")

    assert tools.definitions() == []
    with pytest.raises(SearchError, match="channel quiet cannot search"):
        await tools.search_mailbox(SearchQuery())


# -- against Dovecot --------------------------------------------------------------------


async def test_hook_spacebot_search(mailbox: AgentTools) -> None:
    assert mailbox.hooks is not None

    [hits] = await mailbox.hooks.call_async(
        "spacebot_search", query=SearchQuery(sender="alice@example.com")
    )

    assert [(hit.folder, hit.subject, hit.unread) for hit in hits] == [
        ("INBOX", "Weekend plans", False),
        ("INBOX", "Invoice 1001", True),
        ("Archive", "Invoice 1000", False),
    ]
    first = hits[0]
    assert first.sender == "Alice <alice@example.com>"
    assert first.message_id == "<3-10@example.com>"
    assert first.date == datetime(2024, 3, 10, 12, tzinfo=UTC)
    assert first.text == "Hiking Saturday."
    assert first.uid == 3


async def test_hits_from_two_folders_come_newest_first(mailbox: AgentTools) -> None:
    assert await subjects(mailbox, text="invoice") == [
        "Re: Invoice 1001",  # 7 March, Archive
        "Lunch?",  # 5 March, INBOX, "invoice" in the body
        "Invoice 1001",  # 1 March, INBOX
        "Invoice 1000",  # 1 February, Archive
    ]


async def test_each_criterion_filters(mailbox: AgentTools) -> None:
    assert await subjects(mailbox, subject="INVOICE") == [
        "Re: Invoice 1001",
        "Invoice 1001",
        "Invoice 1000",
    ]
    assert await subjects(mailbox, text="saturday") == ["Weekend plans"]
    assert await subjects(mailbox, sender="alice", text="invoice") == [
        "Invoice 1001",
        "Invoice 1000",
    ]
    assert await subjects(mailbox, unread_only=True) == [
        "Re: Invoice 1001",
        "Lunch?",
        "Invoice 1001",
    ]
    assert await subjects(mailbox, folders=("Archive",)) == ["Re: Invoice 1001", "Invoice 1000"]
    assert await subjects(mailbox, sender="nobody@example.com") == []


async def test_the_limit_keeps_the_newest(mailbox: AgentTools) -> None:
    assert await subjects(mailbox, limit=2) == ["Weekend plans", "Re: Invoice 1001"]
    assert await subjects(mailbox, limit=1, folders=("INBOX",)) == ["Weekend plans"]


async def test_a_search_marks_nothing_seen(mailbox: AgentTools, dovecot, mail_accounts) -> None:
    before = seen_flags(dovecot, mail_accounts.bot)

    assert len(await subjects(mailbox, limit=50)) == len(MAILBOX)
    assert len(await subjects(mailbox, unread_only=True, text="invoice")) == 3

    assert seen_flags(dovecot, mail_accounts.bot) == before
    assert before == {"INBOX": [False, False, True], "Archive": [True, False]}


async def test_since_days_keeps_mail_received_lately(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    bot = mail_accounts.bot
    with dovecot.imap_session(bot) as imap:
        for subject, days_ago in (("old news", 40), ("fresh news", 2)):
            received = imaplib.Time2Internaldate(time.time() - days_ago * 86400)
            imap.append('"INBOX"', "", received, mail("a@example.com", subject, "news", 1))
    config = email_config(tmp_path, dovecot, smtp_relay, bot, certs, folders='["INBOX"]')

    with tools_of(config) as tools:
        assert await subjects(tools, since_days=7) == ["fresh news"]
        assert sorted(await subjects(tools, since_days=100)) == ["fresh news", "old news"]


async def test_hostile_values_find_exactly_what_they_should_and_inject_nothing(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    bot = mail_accounts.bot
    hostile = ['He said "yes"', "C:\\temp\\report", '") OR ALL ("', "Grüße aus Köln"]
    mails = [mail("a@example.com", subject, "x", day + 1) for day, subject in enumerate(hostile)]
    mails.append(mail("b@example.com", "harmless", "nothing here", 9))
    fill(dovecot, bot, [("INBOX", False, raw) for raw in mails])
    config = email_config(tmp_path, dovecot, smtp_relay, bot, certs, folders='["INBOX"]')

    with tools_of(config) as tools:
        assert await subjects(tools, subject='said "yes"') == ['He said "yes"']
        assert await subjects(tools, subject="\\temp\\") == ["C:\\temp\\report"]
        assert await subjects(tools, subject='") OR ALL ("') == ['") OR ALL ("']
        assert await subjects(tools, text='") OR ALL (') == ['") OR ALL ("']
        assert await subjects(tools, subject="grüße AUS köln") == ["Grüße aus Köln"]
        assert await subjects(tools, subject="Köln\r\nA1 UID STORE 1:* +FLAGS (\\Deleted)") == []
        assert await subjects(tools, text='x" UNSEEN OR ALL "') == []
        with pytest.raises(SearchError, match=re.escape(r"folder 'INBOX\r\nA1 DELETE INBOX'")):
            await subjects(tools, folders=("INBOX\r\nA1 DELETE INBOX",))
        # Nothing was deleted, flagged or marked seen by the values above.
        assert len(await subjects(tools, limit=50)) == 5

    stored = dovecot.fetch_all(bot)
    assert len(stored) == 5
    assert all(message.flags == frozenset() for message in stored)


# -- spacebot search ---------------------------------------------------------------------


def test_spacebot_search_prints_a_table_and_json_lines(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    fill(dovecot, mail_accounts.bot, MAILBOX)
    config = email_config(tmp_path, dovecot, smtp_relay, mail_accounts.bot, certs)

    # The table shows dates in local time: UTC here, as the mails were written.
    table = run_cli(
        ["search", "--config", str(config), "--from", "alice", "invoice"], tmp_path, [], TZ="UTC"
    )
    as_json = run_cli(
        ["search", "--config", str(config), "--instance", "email", "--unread", "--json"],
        tmp_path,
        [],
    )

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["DATE", "FROM", "SUBJECT", "FOLDER"]
    assert [line.split("  ")[0] for line in lines[1:]] == ["2024-03-01 12:00", "2024-02-01 12:00"]
    assert "Alice <alice@example.com>" in lines[1] and "Invoice 1001" in lines[1]
    assert lines[2].rstrip().endswith("Archive")
    assert as_json.returncode == 0, as_json.stderr
    hits = search_hits_from_data([json.loads(line) for line in as_json.stdout.splitlines()])
    assert [(hit.subject, hit.folder, hit.unread) for hit in hits] == [
        ("Re: Invoice 1001", "Archive", True),
        ("Lunch?", "INBOX", True),
        ("Invoice 1001", "INBOX", True),
    ]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--limit", "0"], "limit must be a whole number from 1 to 50, not 0"),
        (["--limit", "51"], "limit must be a whole number from 1 to 50, not 51"),
        (["--instance", "nope"], "no instance 'nope' (configured: email)"),
        (["--folder", "Nowhere"], "folder 'Nowhere' does not exist on 127.0.0.1"),
    ],
)
def test_spacebot_search_refuses_bad_input_in_one_line(
    arguments, error, tmp_path, dovecot, mail_accounts, smtp_relay, certs, capsys
) -> None:
    config = email_config(tmp_path, dovecot, smtp_relay, mail_accounts.bot, certs)

    status = main(["search", "--config", str(config), *arguments])

    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert status == 2
    assert line.startswith("spacebot: error: ")
    assert line.endswith(error)
    assert captured.out == ""


def test_spacebot_search_on_a_channel_without_search_says_so(
    tmp_path, folder_plugin, capsys
) -> None:
    config = write_folder_config(tmp_path, single_folder_config(make_folder(tmp_path)))

    status = main(["search", "--config", str(config), "invoice"])

    assert status == 2
    assert capsys.readouterr().err.strip() == "spacebot: error: channel folder cannot search"


def test_spacebot_search_with_a_wrong_password_says_what_check_says(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, capsys
) -> None:
    bot = mail_accounts.bot
    config = email_config(tmp_path, dovecot, smtp_relay, Account(bot.address, "wrong"), certs)

    status = main(["search", "--config", str(config), "invoice"])

    [line] = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert line.startswith(f"spacebot: error: Authentication failed for {bot.address} at IMAP")
    assert line.endswith("Verify username and password; check if an app password is required")
    assert "wrong" not in line


# -- a command agent's program searching during a bot run ---------------------------------


async def test_a_command_agent_searches_with_spacebot_search_during_a_run(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    bot, alice = mail_accounts.bot, mail_accounts.alice
    fill(dovecot, bot, [(folder, True, raw) for folder, _, raw in MAILBOX])
    show = tmp_path / "show.py"
    show.write_text(
        "import json, sys\n"
        'print("found: " + " | ".join(json.loads(line)["subject"] for line in sys.stdin))\n'
    )
    script = tmp_path / "agent.sh"
    script.write_text(
        "cat > /dev/null\n"
        'echo "instance=$SPACEBOT_INSTANCE config=$SPACEBOT_CONFIG"\n'
        f'$SPACEBOT_SEARCH --subject invoice --limit 2 | "{sys.executable}" "{show}"\n'
    )
    agents = (
        f'[[agents]]\nid = "main"\nkind = "command"\ncommand = ["sh", "{script}"]\n'
        '[[bindings]]\nagent_id = "main"\nchannel = "email"\n'
    )
    config = email_config(tmp_path, dovecot, smtp_relay, bot, certs, agents)
    question = mail(f"Alice <{alice.address}>", "My bills?", "What did I get?", 19)
    dovecot.deliver(bot.address, question)

    assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    text = email.message_from_bytes(reply.raw, policy=policy.default).get_content()
    assert f"instance=email config={config}" in text
    assert "found: Re: Invoice 1001 | Invoice 1001" in text


def test_queries_and_hits_survive_json() -> None:
    hit = SearchHit("INBOX", 3, "<m@x>", "A <a@x>", "Hi", None, True, "text")
    query = SearchQuery(text="x", unread_only=True, since_days=3, folders=("A",), limit=5)

    assert search_hits_from_data(json.loads(json.dumps(search_hits_to_data([hit])))) == [hit]
    assert search_query_from_data(json.loads(json.dumps(search_query_to_data(query)))) == query
    with pytest.raises(SearchError, match="limit must be"):
        search_query_from_data({"limit": 99})
