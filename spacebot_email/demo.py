"""``spacebot demo``: the email channel end to end, against mail servers in this process.

An IMAP server (pymap, in memory) and an SMTP server (aiosmtpd) start on 127.0.0.1 with
two accounts, the bot and a demo person. The person sends the bot a mail over SMTP and
keeps a copy in their Sent folder, as a mail client does; the bot runs one cycle of the
real runtime (plugins, config file, state store: the code of ``spacebot run --once``);
then the person's mailbox is read back over IMAP and the thread printed.

With ``--serve`` the servers and the bot keep running (``spacebot run``) until Ctrl-C,
and the settings to connect a desktop mail client as the demo person are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

import aiosmtplib
import attrs

from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_core.runtime import Runtime
from spacebot_core.store import StateStore
from spacebot_email.imap import ImapSession
from spacebot_email.testing.pymap_server import PymapServer
from spacebot_email.testing.smtp_relay import SmtpRelay

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
TIMEOUT = 10.0
"""Seconds any one network step of the demo may take."""
DEMO_TIMEOUT = 60.0
"""Seconds the whole exchange (send, one bot cycle, read back) may take."""
POLL_INTERVAL_SECS = 5
SERVE_PORTS = (1143, 2525)
"""IMAP and SMTP ports tried first with ``--serve``, so a mail client's settings
survive a restart of the demo; a free port is taken when one is busy."""
SERVER_LOGGERS = {
    "pymap": logging.WARNING,
    "proxyprotocol": logging.WARNING,
    "spacebot_email.testing": logging.WARNING,
    # aiosmtpd warns at every connection that AUTH is allowed without TLS (on purpose
    # here, on loopback) and that its own Session.login_data is deprecated.
    "mail.log": logging.ERROR,
}
"""The embedded servers' loggers and the level they are raised to during the demo."""
BOT_LOGGERS = ("spacebot_core", "spacebot_email", "spacebot_contrib")
"""The bot's loggers, silent during the printed exchange unless asked (-v, --log-level)."""


@attrs.frozen
class DemoAccount:
    """A mail account on the demo servers (login name = address)."""

    address: str
    password: str = attrs.field(repr=False)
    display_name: str

    @property
    def mailbox(self) -> str:
        """The address with its display name, as in a From or To header."""
        return formataddr((self.display_name, self.address))


BOT = DemoAccount("bot@spacebot.demo", "bot-password", "Spacebot")
PERSON = DemoAccount("you@spacebot.demo", "you-password", "You")
SUBJECT = "Where is my telescope?"
BODY = """\
Hello,

I ordered a telescope last week (order 1234) and it has not arrived yet.
Could you tell me where it is?

Thanks,
You
"""


class DemoError(Exception):
    """A step of the demo did not give the expected outcome."""


@attrs.frozen
class DemoServers:
    """The running IMAP and SMTP servers, with the accounts `BOT` and `PERSON`."""

    imap: PymapServer
    smtp: SmtpRelay


@attrs.frozen
class Exchange:
    """The thread as the demo person's mail client holds it."""

    original: EmailMessage
    reply: EmailMessage


def run_demo(*, serve: bool = False) -> int:
    """Run the demo; returns the exit status (0, or 1 after a one-line error).

    :param serve: keep the servers and the bot running until Ctrl-C, for a mail client.
    """
    with _quiet_servers():
        try:
            asyncio.run(_demo(serve))
        except Exception as error:
            log.debug("detail of the demo's failure", exc_info=error)
            print(f"spacebot demo: error: {_one_line(error)}", file=sys.stderr)
            return 1
    return 0


async def _demo(serve: bool) -> None:
    """Start the servers, run the exchange, print it, and serve when asked."""
    with tempfile.TemporaryDirectory(prefix="spacebot-demo-") as directory:
        async with demo_servers(serve) as servers:
            config_path = write_demo_config(Path(directory), servers)
            host = load_plugins()
            config = load_config(config_path, host.adapter_classes(), host.agent_classes())
            store = StateStore.open(config.state_dir)
            try:
                runtime = Runtime.create(config, host, store)
                with _quiet_bot():
                    async with asyncio.timeout(DEMO_TIMEOUT):
                        exchange = await run_exchange(runtime, servers)
                print(render_exchange(exchange, servers), flush=True)
                if serve:
                    print(render_client_settings(servers, config_path), flush=True)
                    await runtime.run_forever()
            finally:
                store.close()


@contextlib.asynccontextmanager
async def demo_servers(serve: bool = False) -> AsyncIterator[DemoServers]:
    """The IMAP server (on this event loop) and the SMTP server (in its own thread),
    delivering into IMAP, with the bot's and the person's accounts; always stopped.

    :param serve: try the fixed `SERVE_PORTS` first.
    """
    imap_port, smtp_port = (_port_if_free(port) for port in SERVE_PORTS) if serve else (0, 0)
    imap = PymapServer(HOST, imap_port)
    await imap.start()
    smtp: SmtpRelay | None = None
    try:
        for account in (BOT, PERSON):
            await imap.add_user(account.address, account.password)
        smtp = SmtpRelay(
            imap.deliver_from_thread(TIMEOUT),
            tls="none",
            credentials={account.address: account.password for account in (BOT, PERSON)},
            auth_require_tls=False,
            host=HOST,
            port=smtp_port,
        )
        await asyncio.to_thread(smtp.start, TIMEOUT)
        yield DemoServers(imap, smtp)
    finally:
        if smtp is not None:
            # In a thread: the relay may be handing a mail to this very event loop.
            await asyncio.to_thread(smtp.stop)
        await imap.stop()


def write_demo_config(directory: Path, servers: DemoServers) -> Path:
    """Write the bot's ``config.toml`` (plain loopback servers, the echo agent)."""

    def quoted(value: object) -> str:
        return json.dumps(str(value))  # a TOML basic string

    path = directory / "config.toml"
    path.write_text(
        f"""\
[messaging.email]
imap_host = {quoted(HOST)}
imap_port = {servers.imap.port}
imap_use_tls = false
imap_use_starttls = false
imap_username = {quoted(BOT.address)}
imap_password = {quoted(BOT.password)}
smtp_host = {quoted(HOST)}
smtp_port = {servers.smtp.port}
smtp_use_starttls = false
from_address = {quoted(BOT.address)}
from_name = {quoted(BOT.display_name)}
allowed_senders = ["@spacebot.demo"]
# The embedded server vouches for no sender (no Authentication-Results header).
sender_auth = "off"
poll_interval_secs = {POLL_INTERVAL_SECS}
timeout_secs = {TIMEOUT}

[[agents]]
id = "main"
kind = "echo"

[[bindings]]
agent_id = "main"
channel = "email"

[runtime]
state_dir = {quoted(directory / "state")}
""",
        encoding="utf-8",
    )
    return path


async def run_exchange(runtime: Runtime, servers: DemoServers) -> Exchange:
    """The person writes to the bot, the bot runs one cycle, the thread is read back.

    :raises DemoError: the bot failed, or no threaded reply reached the person.
    """
    original = compose_original()
    await send_as_person(servers, original)
    failures = await runtime.run_once()
    if failures:
        runtime_key, error = failures[0]
        raise DemoError(f"the bot's cycle failed: [{runtime_key}] {error}")
    sent, inbox = await read_person_mailbox(servers)
    return find_thread(original["Message-ID"], sent, inbox)


def compose_original() -> EmailMessage:
    """The demo person's mail to the bot, as a mail client writes it."""
    message = EmailMessage()
    message["From"] = PERSON.mailbox
    message["To"] = BOT.mailbox
    message["Subject"] = SUBJECT
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="spacebot.demo")
    message.set_content(BODY)
    return message


async def send_as_person(servers: DemoServers, message: EmailMessage) -> None:
    """Submit over SMTP as the person, then keep a copy in their Sent folder."""
    await aiosmtplib.send(
        message,
        hostname=HOST,
        port=servers.smtp.port,
        username=PERSON.address,
        password=PERSON.password,
        start_tls=False,
        timeout=TIMEOUT,
        local_hostname="localhost",
    )
    async with _person_imap(servers) as imap:
        await imap.append("Sent", message.as_bytes(), flags="\\Seen")


async def read_person_mailbox(
    servers: DemoServers,
) -> tuple[list[EmailMessage], list[EmailMessage]]:
    """Every message of the person's Sent folder and INBOX, read over IMAP."""
    async with _person_imap(servers) as imap:
        return await _read_folder(imap, "Sent"), await _read_folder(imap, "INBOX")


def find_thread(original_id: str, sent: list[EmailMessage], inbox: list[EmailMessage]) -> Exchange:
    """The sent original and the reply whose In-Reply-To names it.

    :raises DemoError: either is missing.
    """
    originals = [mail for mail in sent if mail["Message-ID"] == original_id]
    if not originals:
        raise DemoError(f"the demo mail {original_id} is not in the Sent folder")
    replies = [mail for mail in inbox if mail["In-Reply-To"] == original_id]
    if not replies:
        found = ", ".join(repr(str(mail["Subject"])) for mail in inbox) or "nothing"
        raise DemoError(f"no reply to {original_id} reached {PERSON.address} (INBOX: {found})")
    return Exchange(originals[0], replies[0])


@contextlib.asynccontextmanager
async def _person_imap(servers: DemoServers) -> AsyncIterator[ImapSession]:
    """The demo person's IMAP session; always logged out."""
    session = await ImapSession.open(
        host=HOST,
        port=servers.imap.port,
        security="plain",
        username=PERSON.address,
        password=PERSON.password,
        ssl_context=None,
        timeout=TIMEOUT,
    )
    try:
        yield session
    finally:
        await session.close()


async def _read_folder(imap: ImapSession, folder: str) -> list[EmailMessage]:
    """Every message of a folder, oldest first, without marking any seen."""
    await imap.select(folder)
    response = await asyncio.wait_for(imap.client.uid_search("ALL", charset=None), TIMEOUT)
    if response.result != "OK":
        raise DemoError(f"UID SEARCH ALL in {folder} failed: {response.lines[-1]!r}")
    uids = [
        int(token)
        for line in response.lines[:-1]
        for token in bytes(line).split()
        if token.isdigit()
    ]
    fetched = await imap.fetch(uids)
    return [_parse(mail.raw) for mail in sorted(fetched, key=lambda mail: mail.uid)]


def _parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def render_exchange(exchange: Exchange, servers: DemoServers) -> str:
    """The thread as a mail client shows it: the original, the reply indented under it,
    and the threading (`find_thread` only pairs a reply whose In-Reply-To names the
    original)."""
    original, reply = exchange.original, exchange.reply
    tee, corner, bar = _tree_marks()
    lines = [
        f"spacebot demo: IMAP server (pymap, in memory) on {HOST}:{servers.imap.port}, "
        f"SMTP server (aiosmtpd) on {HOST}:{servers.smtp.port}",
        f"1. {PERSON.address} sent a mail to {BOT.address} over SMTP.",
        "2. spacebot ran one cycle, as `spacebot run --once` does: the echo agent answered.",
        f"3. The mailbox of {PERSON.address}, read over IMAP:",
        "",
        f"{tee} [Sent]",
        *_render_mail(original, f"{bar}  ", with_in_reply_to=False),
        f"{bar}",
        f"{corner} reply [INBOX]",
        *_render_mail(reply, "     ", with_in_reply_to=True),
        "",
        f"Threaded: the reply's In-Reply-To is the original's Message-ID {reply['In-Reply-To']}.",
    ]
    return "\n".join(line.rstrip() for line in lines)


def _render_mail(mail: EmailMessage, indent: str, *, with_in_reply_to: bool) -> list[str]:
    names = ["From", "To", "Subject", "Date", "Message-ID"]
    if with_in_reply_to:
        names.append("In-Reply-To")
    headers = [f"{name + ':':<13}{str(mail[name]).strip()}" for name in names]
    body_part = mail.get_body(preferencelist=("plain",))
    body = body_part.get_content() if isinstance(body_part, EmailMessage) else ""
    return [indent + line for line in [*headers, "", *body.rstrip("\n").splitlines()]]


def _tree_marks() -> tuple[str, str, str]:
    """Box-drawing marks when the terminal can print them, ASCII otherwise."""
    try:
        "┌└─│".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "*", "`-", "|"
    return "┌", "└─", "│"


def render_client_settings(servers: DemoServers, config_path: Path) -> str:
    """What to type into a desktop mail client to write to the bot as the demo person."""
    return f"""
The demo keeps running. Connect a mail client as the demo person (in Thunderbird:
Account Settings > Account Actions > Add Mail Account, then "Configure manually"):

  Incoming mail (IMAP)
    server:     {HOST}
    port:       {servers.imap.port}
    security:   none (a plain connection, on this computer only)
    auth:       normal password
    username:   {PERSON.address}
    password:   {PERSON.password}
  Outgoing mail (SMTP)
    server:     {HOST}
    port:       {servers.smtp.port}
    security:   none
    auth:       normal password
    username:   {PERSON.address}
    password:   {PERSON.password}

Write to {BOT.address}: the bot checks its INBOX every {POLL_INTERVAL_SECS} s and answers
in the thread. The bot's config is {config_path}. Mail is kept in memory only.
Press Ctrl-C to stop."""


def _port_if_free(port: int) -> int:
    """``port`` when nothing listens on it on `HOST`, else 0 (any free port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return 0
    return port


@contextlib.contextmanager
def _quiet_servers() -> Iterator[None]:
    """The embedded servers' loggers raised to `SERVER_LOGGERS`' levels, and no aiosmtpd
    warning about AUTH without TLS (plain AUTH on loopback is what the demo does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        with _raised_levels(SERVER_LOGGERS):
            yield


def _quiet_bot() -> contextlib.AbstractContextManager[None]:
    """The bot's routine logs hidden while the exchange runs (its steps are printed),
    unless logging was asked below INFO; a failure still ends as one error line."""
    if logging.getLogger().getEffectiveLevel() < logging.INFO:
        return contextlib.nullcontext()
    return _raised_levels(dict.fromkeys(BOT_LOGGERS, logging.CRITICAL))


@contextlib.contextmanager
def _raised_levels(levels: dict[str, int]) -> Iterator[None]:
    """Loggers raised to at least the given levels, restored afterwards."""
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    saved = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(max(logger.getEffectiveLevel(), level))
    try:
        yield
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)


def _one_line(error: BaseException) -> str:
    """An error as one line: its message, or its kind when it has none."""
    text = " ".join(str(error).split())
    if isinstance(error, TimeoutError) and not text:
        return f"the demo did not finish within {DEMO_TIMEOUT:g} s"
    return text or type(error).__name__
