"""Sending over SMTP, against a real aiosmtpd server on 127.0.0.1.

The server runs in the test's own event loop on a free port, with trustme
certificates; each test asserts on what the server received, or on the error the
user would read.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from spacebot_core.errors import ChannelError
from spacebot_email.compose import compose_reply, reply_message_id
from spacebot_email.smtp import SmtpSender, is_loopback_host
from spacebot_email.smtp_errors import HINT_AUTH, HINT_PLAINTEXT, HINT_TLS, HINT_UNREACHABLE

BOT = "bot@example.com"
LOGIN = "bot"
PASSWORD = "s3cret-app-password"


@attrs.define
class Recorder:
    """An aiosmtpd handler that keeps every envelope and refuses chosen recipients."""

    envelopes: list[tuple[Any, Envelope]] = attrs.Factory(list)
    refuse: set[str] = attrs.Factory(set)
    logins: list[str] = attrs.Factory(list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append((session.peer, envelope))
        return "250 2.0.0 queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """Accept only LOGIN/PASSWORD; fail with handled=False so the client hears 535."""
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            LOGIN.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(LOGIN)
        return AuthResult(success=ok, handled=False)


@attrs.frozen
class Smtpd:
    """A running test server: where it listens and what it recorded."""

    port: int
    recorder: Recorder


StartSmtpd = Callable[..., Awaitable[Smtpd]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The test CA that signs the server's certificate."""
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test CA as a PEM file, as a user sets it in tls_ca_file."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The server side TLS context, for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
async def smtpd() -> AsyncIterator[StartSmtpd]:
    """Start aiosmtpd servers in this loop on free ports; always stopped at the end."""
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()

    async def start(
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        auth: bool = False,
        auth_require_tls: bool = True,
    ) -> Smtpd:
        recorder = Recorder()

        def factory() -> SMTP:
            return SMTP(
                recorder,
                hostname="mx.test",  # not socket.getfqdn(), a slow DNS lookup
                tls_context=starttls,
                require_starttls=starttls is not None,
                authenticator=recorder.authenticate if auth else None,
                auth_require_tls=auth_require_tls,
                loop=loop,
            )

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=implicit_tls)
        servers.append(server)
        return Smtpd(server.sockets[0].getsockname()[1], recorder)

    try:
        yield start
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()


def a_reply(text: str = "Yes, at noon.") -> email.message.EmailMessage:
    """A composed reply to alice; its Message-ID derives from the text."""
    return compose_reply(
        from_address=BOT,
        from_name="Spacebot",
        to="alice@example.org",
        original_subject="Lunch?",
        original_message_id="<m1@example.org>",
        original_references=[],
        text=text,
        message_id=reply_message_id(text, BOT),
    )


def parsed(raw: bytes) -> email.message.EmailMessage:
    """A message as the recipient's mail program reads it."""
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def free_port() -> int:
    """A port with nobody listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_secret(*things: object) -> None:
    """Neither str() nor repr() of any of ``things`` shows the password."""
    for thing in things:
        assert PASSWORD not in str(thing)
        assert PASSWORD not in repr(thing)


async def test_plain_send_to_loopback_delivers_exact_headers(smtpd: StartSmtpd) -> None:
    server = await smtpd()
    mail = a_reply()

    await SmtpSender("127.0.0.1", server.port, security="plain", timeout=5).send(mail)

    [(_, envelope)] = server.recorder.envelopes
    assert envelope.mail_from == BOT
    assert envelope.rcpt_tos == ["alice@example.org"]
    assert envelope.content == mail.as_bytes()
    got = parsed(envelope.content)
    assert got.items() == parsed(mail.as_bytes()).items()
    assert got["In-Reply-To"] == "<m1@example.org>"
    assert got["Auto-Submitted"] == "auto-replied"


async def test_envelope_can_differ_from_headers(smtpd: StartSmtpd) -> None:
    server = await smtpd()

    await SmtpSender("127.0.0.1", server.port, security="plain", timeout=5).send(
        a_reply(), sender="bounces@example.com", recipients=["carol@example.org"]
    )

    [(_, envelope)] = server.recorder.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("bounces@example.com", ["carol@example.org"])


async def test_starttls_with_trusted_ca_logs_in_and_sends(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    server = await smtpd(starttls=server_tls, auth=True)
    sender = SmtpSender(
        "127.0.0.1",
        server.port,
        security="starttls",
        username=LOGIN,
        password=PASSWORD,
        tls_ca_file=ca_file,
        timeout=5,
    )

    await sender.send(a_reply())

    assert server.recorder.logins == [LOGIN]
    assert len(server.recorder.envelopes) == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_untrusted_certificate_is_refused(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext, security: str
) -> None:
    if security == "tls":
        server = await smtpd(implicit_tls=server_tls)
    else:
        server = await smtpd(starttls=server_tls)
    # The default context trusts the system's CAs, not our test CA.
    sender = SmtpSender("127.0.0.1", server.port, security=security, timeout=5)  # type: ignore[arg-type]

    with pytest.raises(ChannelError) as caught:
        await sender.send(a_reply())

    message = caught.value.args[0]
    assert message.startswith(f"TLS handshake failed with 127.0.0.1:{server.port} (")
    assert "certificate verify failed" in message
    assert caught.value.hint == HINT_TLS
    assert server.recorder.envelopes == []


async def test_certificate_from_another_ca_file_is_refused(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    server = await smtpd(starttls=server_tls)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    sender = SmtpSender("127.0.0.1", server.port, tls_ca_file=str(other), timeout=5)

    with pytest.raises(ChannelError, match="TLS handshake failed"):
        await sender.send(a_reply())


async def test_implicit_tls_sends(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    # aiosmtpd counts only STARTTLS as TLS, so AUTH on an implicit-TLS port needs this.
    server = await smtpd(implicit_tls=server_tls, auth=True, auth_require_tls=False)
    sender = SmtpSender(
        "localhost",
        server.port,
        security="tls",
        username=LOGIN,
        password=PASSWORD,
        tls_ca_file=ca_file,
        timeout=5,
    )

    await sender.send(a_reply())

    assert server.recorder.logins == [LOGIN]
    assert len(server.recorder.envelopes) == 1


async def test_wrong_password_fails_promptly_with_auth_error(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    server = await smtpd(starttls=server_tls, auth=True)
    wrong = "wrong-" + PASSWORD
    sender = SmtpSender(
        "127.0.0.1",
        server.port,
        username=LOGIN,
        password=wrong,
        tls_ca_file=ca_file,
        timeout=5,
    )
    started = time.monotonic()

    with pytest.raises(ChannelError) as caught:
        await sender.send(a_reply())

    assert time.monotonic() - started < 2
    assert caught.value.args[0] == f"SMTP authentication failed for bot at 127.0.0.1:{server.port}"
    assert caught.value.hint == HINT_AUTH
    for thing in (caught.value, caught.value.args, caught.value.hint, sender):
        assert wrong not in str(thing) and wrong not in repr(thing)
    assert server.recorder.envelopes == []


async def test_plaintext_to_remote_host_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()

    async def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(loop, "create_connection", no_network)
    monkeypatch.setattr(loop, "getaddrinfo", no_network)
    sender = SmtpSender("smtp.example.com", 25, security="plain", timeout=5)

    with pytest.raises(ChannelError) as caught:
        await sender.send(a_reply())
    [step] = await sender.check()

    assert "smtp.example.com:25" in caught.value.args[0]
    assert caught.value.hint == HINT_PLAINTEXT
    assert (step.ok, step.fix) == (False, HINT_PLAINTEXT)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("localhost.example.com", False),
        ("smtp.example.com", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("128.0.0.1", False),
    ],
)
def test_only_loopback_hosts_count_as_local(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


async def test_refused_recipient_is_named(smtpd: StartSmtpd) -> None:
    server = await smtpd()
    server.recorder.refuse.add("alice@example.org")

    with pytest.raises(ChannelError) as caught:
        await SmtpSender("127.0.0.1", server.port, security="plain", timeout=5).send(a_reply())

    assert "refused the recipient alice@example.org (550 5.1.1 mailbox unavailable)" in str(
        caught.value
    )
    assert server.recorder.envelopes == []


async def test_one_session_sends_several_messages(smtpd: StartSmtpd) -> None:
    server = await smtpd()
    sender = SmtpSender("127.0.0.1", server.port, security="plain", timeout=5)

    async with sender.session() as session:
        await session.send(a_reply("one"))
        await session.send(a_reply("two"))
        assert session.is_open

    assert not session.is_open
    peers = {peer for peer, _ in server.recorder.envelopes}
    assert len(server.recorder.envelopes) == 2 and len(peers) == 1


async def test_server_that_wants_login_first_says_so(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext
) -> None:
    server = await smtpd(starttls=server_tls)

    with pytest.raises(ChannelError) as caught:
        await SmtpSender("127.0.0.1", server.port, security="plain", timeout=5).send(a_reply())

    assert caught.value.args[0] == (
        f"SMTP server 127.0.0.1:{server.port} requires login before sending "
        "(530 Must issue a STARTTLS command first)"
    )
    assert "smtp_use_starttls = true" in (caught.value.hint or "")


async def test_sending_on_a_closed_session_is_an_error(smtpd: StartSmtpd) -> None:
    server = await smtpd()
    session = SmtpSender("127.0.0.1", server.port, security="plain", timeout=5).session()

    with pytest.raises(ChannelError, match="not connected"):
        await session.send(a_reply())


async def test_unreachable_server_says_cannot_reach() -> None:
    port = free_port()

    with pytest.raises(ChannelError) as caught:
        await SmtpSender("127.0.0.1", port, security="plain", timeout=5).send(a_reply())

    assert caught.value.args[0] == f"cannot reach SMTP server 127.0.0.1:{port} (connection refused)"
    assert caught.value.hint == HINT_UNREACHABLE


async def test_silent_server_times_out_promptly() -> None:
    """STARTTLS against an implicit-TLS port looks like this: no greeting ever comes."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(ChannelError) as caught:
            await SmtpSender("127.0.0.1", port, timeout=0.5).send(a_reply())
    finally:
        silent.close()
        await silent.wait_closed()

    assert time.monotonic() - started < 2
    assert (
        caught.value.args[0] == f"cannot reach SMTP server 127.0.0.1:{port} (no answer within 0.5s)"
    )


async def test_server_without_starttls_is_a_tls_error(smtpd: StartSmtpd) -> None:
    server = await smtpd()

    with pytest.raises(ChannelError) as caught:
        await SmtpSender("127.0.0.1", server.port, security="starttls", timeout=5).send(a_reply())

    assert caught.value.args[0].startswith(f"TLS handshake failed with 127.0.0.1:{server.port}")
    assert "STARTTLS" in caught.value.args[0]
    assert caught.value.hint == HINT_TLS


async def test_implicit_tls_against_a_plain_port_is_a_tls_error(smtpd: StartSmtpd) -> None:
    server = await smtpd()

    with pytest.raises(ChannelError) as caught:
        await SmtpSender("127.0.0.1", server.port, security="tls", timeout=5).send(a_reply())

    assert caught.value.args[0].startswith("TLS handshake failed with")
    assert caught.value.hint == HINT_TLS


async def test_check_reports_each_step(
    smtpd: StartSmtpd, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    server = await smtpd(starttls=server_tls, auth=True)
    good = SmtpSender(
        "127.0.0.1", server.port, username=LOGIN, password=PASSWORD, tls_ca_file=ca_file, timeout=5
    )
    bad = attrs.evolve(good, password="nope")

    passed = await good.check()
    failed = await bad.check()

    assert [(r.step, r.ok) for r in passed] == [
        (f"SMTP connect to 127.0.0.1:{server.port}", True),
        ("SMTP STARTTLS", True),
        ("SMTP login as bot", True),
    ]
    assert passed[1].detail.startswith("TLSv1.")
    assert [r.ok for r in failed] == [True, True, False]
    assert failed[-1].fix == HINT_AUTH


async def test_password_never_shows(
    smtpd: StartSmtpd,
    server_tls: ssl.SSLContext,
    ca_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    server = await smtpd(starttls=server_tls, auth=True)
    sender = SmtpSender(
        "127.0.0.1",
        server.port,
        username=LOGIN,
        password=PASSWORD + "-but-wrong",
        tls_ca_file=ca_file,
        timeout=5,
    )

    with pytest.raises(ChannelError) as caught:
        await sender.send(a_reply())
    results = await sender.check()

    assert_no_secret(sender, sender.session(), caught.value, caught.value.hint, *results)
    assert PASSWORD not in caplog.text
    assert "password" not in repr(sender)
