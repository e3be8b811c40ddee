"""A thread's earlier mails that the bot never saw reach the agent as history.

The thread began before the bot ran, or went on in another folder or in Sent: the
agent still gets those mails, found by the Message-IDs in References, oldest first,
with the account's own mails as the bot's side.
"""

from __future__ import annotations

import email
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from email_setup import instance_keys, mail_from, write_config

from spacebot_core import (
    Agent,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
    hookimpl,
)
from spacebot_core.config import load_config
from spacebot_core.errors import ConfigError
from spacebot_core.plugins import load_plugins
from spacebot_email.testing import Account, CertFiles, DovecotServer, SmtpRelay
from spacebot_email.thread_history import searchable_id, sent_folder, wanted_ids
from tests.core_fixtures import run_once

SEEN = ["\\Seen"]


class Recorder:
    """A plugin whose agent kind ``recording`` notes each message and the history it
    was given, and answers "noted"."""

    def __init__(self) -> None:
        self.calls: list[tuple[InboundMessage, list[HistoryEntry]]] = []

    @hookimpl
    def spacebot_register_agents(self, register: Callable[[str, type], None]) -> None:
        calls = self.calls

        @attrs.define(eq=False)
        class RecordingAgent(Agent):
            async def respond(
                self, message: InboundMessage, history: list[HistoryEntry], tools: Any = None
            ) -> list[OutboundResponse.Text]:
                calls.append((message, list(history)))
                return [OutboundResponse.Text("noted")]

        register("recording", RecordingAgent)

    def history_of(self, text: str) -> list[tuple[str, str]]:
        """(role, text) of the history the agent was given with the message ``text``."""
        [history] = [history for message, history in self.calls if message.text == text]
        return [(entry.role, entry.text) for entry in history]


class BrokenHistory:
    """A cross-cutting plugin whose thread history always fails."""

    @hookimpl
    async def spacebot_thread_history(
        self, runtime_key: str, message: InboundMessage, known: list[HistoryEntry]
    ) -> list[HistoryEntry]:
        raise RuntimeError("the archive is unreachable")


def _config(
    tmp_path: Path,
    dovecot: DovecotServer,
    relay: SmtpRelay,
    bot: Account,
    certs: CertFiles,
    extra: str = "",
) -> Path:
    return write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + 'folders = ["INBOX", "Support"]\n'
        + extra
        + '\n[[agents]]\nid = "main"\nkind = "recording"\ndefault = true\n',
    )


def _days_ago(days: int) -> dict[str, str]:
    return {"Date": format_datetime(datetime.now(UTC) - timedelta(days=days))}


def _message_id(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=policy.default)["Message-ID"].strip()


@pytest.fixture
def folders(dovecot: DovecotServer, mail_accounts) -> None:
    """The bot's account has a Support folder (polled) and a Sent folder (\\Sent)."""
    for name in ("Support", "Sent"):
        dovecot.create_folder(mail_accounts.bot, name)


@pytest.mark.usefixtures("folders")
async def test_hook_spacebot_thread_history(tmp_path, dovecot, mail_accounts, smtp_relay, certs):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    # Before the bot ran: Alice wrote to Support, the account's owner answered (Sent).
    first_id, raw = mail_from(
        alice, bot, "Kettle", "Can I return the blue kettle?", headers=_days_ago(3)
    )
    dovecot.append(bot, "Support", raw, flags=SEEN)
    answer_id, raw = mail_from(
        bot,
        alice,
        "Re: Kettle",
        "Yes, within 30 days.\n\nOn Monday, Alice wrote:\n> Can I return the blue kettle?\n",
        in_reply_to=first_id,
        references=[first_id],
        headers=_days_ago(2),
    )
    dovecot.append(bot, "Sent", raw, flags=SEEN)
    _, raw = mail_from(alice, bot, "Unrelated", "Something else entirely.")
    dovecot.append(bot, "INBOX", raw, flags=SEEN)
    _, raw = mail_from(
        alice,
        bot,
        "Re: Kettle",
        "Where do I send it?\n\n> Yes, within 30 days.\n",
        in_reply_to=answer_id,
        references=[first_id, answer_id],
    )
    dovecot.deliver(bot.address, raw)
    recorder = Recorder()

    assert await run_once(_config(tmp_path, dovecot, smtp_relay, bot, certs), rec=recorder) == []

    [(message, history)] = recorder.calls
    assert message.text == "Where do I send it?"
    assert [(e.role, e.text, e.sender_id, e.message_id) for e in history] == [
        ("user", "Can I return the blue kettle?", alice.address, first_id),
        ("assistant", "Yes, within 30 days.", None, answer_id),
    ]
    # Read as context only: nothing more was answered or marked.
    assert len(dovecot.fetch_all(alice)) == 1
    assert [m.flags for m in dovecot.fetch_all(bot, "Sent")] == [frozenset(SEEN)]


@pytest.mark.usefixtures("folders")
async def test_only_the_newest_thread_history_max_earlier_mails_are_read(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    references: list[str] = []
    for number in range(1, 5):
        message_id, raw = mail_from(
            alice,
            bot,
            "Log",
            f"entry {number}",
            references=list(references),
            headers=_days_ago(10 - number),
        )
        dovecot.append(bot, "Support", raw, flags=SEEN)
        references.append(message_id)
    _, raw = mail_from(alice, bot, "Log", "entry 5", references=references)
    dovecot.deliver(bot.address, raw)
    recorder = Recorder()
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs, "thread_history_max = 2\n")

    assert await run_once(config, rec=recorder) == []

    assert recorder.history_of("entry 5") == [("user", "entry 3"), ("user", "entry 4")]


@pytest.mark.usefixtures("folders")
async def test_mails_the_store_holds_are_not_given_twice(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    first_id, raw = mail_from(alice, bot, "Order", "I ordered a lamp.", headers=_days_ago(2))
    dovecot.append(bot, "Support", raw, flags=SEEN)
    second_id, raw = mail_from(alice, bot, "Re: Order", "It has not come.", references=[first_id])
    dovecot.deliver(bot.address, raw)
    recorder = Recorder()
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs)
    assert await run_once(config, rec=recorder) == []
    # Alice answers the bot's reply; its copy (self_copy) and her second mail are in
    # INBOX, and both are in the store's history already.
    [reply] = dovecot.fetch_all(alice)
    reply_id = _message_id(reply.raw)
    _, raw = mail_from(
        alice,
        bot,
        "Re: Order",
        "Still nothing.",
        in_reply_to=reply_id,
        references=[first_id, second_id, reply_id],
    )
    dovecot.deliver(bot.address, raw)

    assert await run_once(config, rec=recorder) == []

    assert recorder.history_of("It has not come.") == [("user", "I ordered a lamp.")]
    assert recorder.history_of("Still nothing.") == [
        ("user", "I ordered a lamp."),
        ("user", "It has not come."),
        ("assistant", "noted"),
    ]


@pytest.mark.usefixtures("folders")
async def test_a_message_id_with_quotes_and_backslashes_does_not_break_the_search(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    first_id, raw = mail_from(alice, bot, "Bill", "My bill is wrong.", headers=_days_ago(1))
    dovecot.append(bot, "Support", raw, flags=SEEN)
    _, raw = mail_from(alice, bot, "Secret", "Unrelated and private.")
    dovecot.append(bot, "INBOX", raw, flags=SEEN)
    # Unquoted, either would end the search string early and make the command invalid.
    hostile = ['<x"OR"ALL"@evil.example>', "<trail\\@evil.example>"]
    _, raw = mail_from(alice, bot, "Re: Bill", "Any news?", references=[first_id, *hostile])
    dovecot.deliver(bot.address, raw)
    recorder = Recorder()

    assert await run_once(_config(tmp_path, dovecot, smtp_relay, bot, certs), rec=recorder) == []

    [(message, history)] = recorder.calls
    assert message.metadata["references"][1:] == hostile  # searched for with the first
    assert [(e.role, e.text) for e in history] == [("user", "My bill is wrong.")]
    assert len(dovecot.fetch_all(alice)) == 1


@pytest.mark.usefixtures("folders")
async def test_a_failing_thread_history_costs_the_context_not_the_answer(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, caplog
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    first_id, raw = mail_from(alice, bot, "Hi", "first", headers=_days_ago(1))
    dovecot.append(bot, "Support", raw, flags=SEEN)
    _, raw = mail_from(alice, bot, "Re: Hi", "second", references=[first_id])
    dovecot.deliver(bot.address, raw)
    recorder = Recorder()
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs)

    assert await run_once(config, rec=recorder, broken=BrokenHistory()) == []

    assert recorder.history_of("second") == []
    assert len(dovecot.fetch_all(alice)) == 1
    assert "the archive is unreachable" in caplog.text


def test_a_negative_thread_history_max_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[messaging.email]\nimap_host = "127.0.0.1"\nsmtp_host = "127.0.0.1"\n'
        'imap_username = "bot@example.com"\nimap_password = "pw"\nthread_history_max = -1\n'
    )
    host = load_plugins()

    with pytest.raises(ConfigError, match="thread_history_max: must be 0"):
        load_config(path, host.adapter_classes(), host.agent_classes())


def _message(references: list[str], in_reply_to: str | None = None) -> InboundMessage:
    return InboundMessage(
        id="<now@example.com>",
        source="email",
        adapter="email",
        conversation_id="email:email:0",
        sender_id="alice@example.com",
        content=MessageContent.Text("now"),
        timestamp=datetime.now(UTC),
        metadata={"references": references, "in_reply_to": in_reply_to},
    )


def test_ids_that_cannot_be_quoted_safely_are_never_searched() -> None:
    for unsafe in (
        "<a\r\nb@x>",
        "<a\x00@x>",
        "<é@x>",
        "<a b@x>",
        "a@x",
        "<>",
        "<" + "a" * 999 + ">",
    ):
        assert not searchable_id(unsafe), unsafe
    assert searchable_id('<a"b\\c@x>')
    message = _message(["<1@x>", "<a\r\nb@x>", "<2@x>", "<3@x>"], in_reply_to="<4@x>")

    assert wanted_ids(message, {"<2@x>"}, limit=10) == ["<1@x>", "<3@x>", "<4@x>"]
    assert wanted_ids(message, set(), limit=2) == ["<3@x>", "<4@x>"]
    assert wanted_ids(message, set(), limit=0) == []


def test_the_sent_folder_is_the_one_marked_sent_else_a_common_name() -> None:
    marked = [("INBOX", frozenset()), ("Gesendet", frozenset({"\\Sent"})), ("Sent", frozenset())]
    named = [
        ("INBOX", frozenset()),
        ("[Gmail]", frozenset({"\\Noselect"})),
        ("Sent Items", frozenset()),
    ]

    assert sent_folder(marked) == "Gesendet"
    assert sent_folder(named) == "Sent Items"
    assert sent_folder([("INBOX", frozenset())]) is None
