"""The real-server harness works: Dovecot, the SMTP relay and the certificates.

Every other test stands on these fixtures, so these tests check them the way the
channel will use them: aioimaplib and aiosmtplib against the servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from email.message import EmailMessage

import aioimaplib
import aiosmtplib
import pytest

from spacebot_email.testing import (
    Account,
    CertFiles,
    DovecotServer,
    MailAccounts,
    SmtpRelay,
)

TIMEOUT = 10.0


def make_mail(sender: str, recipient: str, subject: str) -> EmailMessage:
    """A small plain-text mail."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    message.set_content(f"Body of {subject}.\n")
    return message


@asynccontextmanager
async def imap_client(
    dovecot: DovecotServer, *, implicit_tls: bool = False, context: ssl.SSLContext | None = None
) -> AsyncIterator[aioimaplib.IMAP4]:
    """An aioimaplib client that has read the greeting; logged out afterwards."""
    if implicit_tls:
        client = aioimaplib.IMAP4_SSL(
            dovecot.host, dovecot.imaps_port, timeout=TIMEOUT, ssl_context=context
        )
    else:
        client = aioimaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT)
    await client.wait_hello_from_server()
    try:
        yield client
    finally:
        transport = client.protocol.transport
        # After a refused STARTTLS the transport is closed and LOGOUT would only wait
        # for its timeout. After LOGOUT, aioimaplib leaves the socket to the server's
        # close, and a TLS close waits for the peer: abort it here, or the socket may
        # outlive the test's event loop (a ResourceWarning).
        if transport is not None and not transport.is_closing():
            with suppress(Exception):
                await client.logout()
            transport.abort()


async def imap_starttls(
    client: aioimaplib.IMAP4, context: ssl.SSLContext, server_hostname: str = "localhost"
) -> None:
    """STARTTLS for aioimaplib, which knows the command but has no method for it."""
    protocol = client.protocol
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await asyncio.wait_for(protocol.execute(command), TIMEOUT)
    assert response.result == "OK", response
    protocol.transport = await asyncio.wait_for(
        asyncio.get_running_loop().start_tls(
            protocol.transport, protocol, context, server_hostname=server_hostname
        ),
        TIMEOUT,
    )
    await asyncio.wait_for(protocol.capability(), TIMEOUT)


async def login(client: aioimaplib.IMAP4, account: Account) -> None:
    """Log in and insist that it worked."""
    response = await client.login(account.address, account.password)
    assert response.result == "OK", response


async def unseen_uids(client: aioimaplib.IMAP4, folder: str = "INBOX") -> list[int]:
    """The UIDs ``UID SEARCH UNSEEN`` finds in ``folder``."""
    assert (await client.select(folder)).result == "OK"
    response = await client.uid_search("UNSEEN")
    assert response.result == "OK", response
    return [int(uid) for uid in response.lines[0].split()]


# -- IMAP ---------------------------------------------------------------------------------


async def test_imap_login_on_plain_port(dovecot: DovecotServer, mail_accounts: MailAccounts):
    async with imap_client(dovecot) as client:
        assert client.has_capability("STARTTLS")
        await login(client, mail_accounts.bot)
        assert client.get_state() == "AUTH"


async def test_imap_login_after_starttls(
    dovecot: DovecotServer, mail_accounts: MailAccounts, certs: CertFiles
):
    async with imap_client(dovecot) as client:
        await imap_starttls(client, certs.client_context())
        assert client.protocol.transport.get_extra_info("ssl_object") is not None
        assert not client.has_capability("STARTTLS")
        await login(client, mail_accounts.bot)


async def test_imaps_login_with_trusted_ca(
    dovecot: DovecotServer, mail_accounts: MailAccounts, certs: CertFiles
):
    async with imap_client(dovecot, implicit_tls=True, context=certs.client_context()) as client:
        await login(client, mail_accounts.bot)


async def test_imaps_refuses_untrusted_certificate(
    dovecot: DovecotServer, untrusted_certs: CertFiles
):
    with pytest.raises(ssl.SSLCertVerificationError):
        async with imap_client(
            dovecot, implicit_tls=True, context=untrusted_certs.client_context()
        ):
            pass


async def test_starttls_refuses_untrusted_certificate(
    dovecot: DovecotServer, untrusted_certs: CertFiles
):
    async with imap_client(dovecot) as client:
        with pytest.raises(ssl.SSLCertVerificationError):
            await imap_starttls(client, untrusted_certs.client_context())


async def test_imap_wrong_password_is_rejected_promptly(
    dovecot: DovecotServer, mail_accounts: MailAccounts
):
    async with imap_client(dovecot) as client:
        started = time.monotonic()
        response = await client.login(mail_accounts.bot.address, "not-the-password")
        elapsed = time.monotonic() - started
    assert response.result == "NO"
    assert b"AUTHENTICATIONFAILED" in response.lines[0]
    assert elapsed < 2.0  # Dovecot answers failures on a 0.5 s tick


async def test_users_added_at_runtime_log_in_at_once(dovecot: DovecotServer):
    accounts = [dovecot.new_account("fresh") for _ in range(5)]
    async with imap_client(dovecot) as client:
        await login(client, accounts[0])
    for account in accounts[1:]:
        async with imap_client(dovecot) as client:
            await login(client, account)


async def test_delivered_mail_is_unseen_over_imap(
    dovecot: DovecotServer, mail_accounts: MailAccounts
):
    bot = mail_accounts.bot
    raw = make_mail("alice@example.com", bot.address, "first contact").as_bytes()
    await asyncio.to_thread(dovecot.deliver, bot.address, raw)
    async with imap_client(dovecot) as client:
        await login(client, bot)
        uids = await unseen_uids(client)
        assert len(uids) == 1
        response = await client.uid("fetch", str(uids[0]), "(BODY.PEEK[])")
    assert response.result == "OK"
    assert b"Subject: first contact" in bytes(response.lines[1])
    (stored,) = dovecot.fetch_all(bot)
    assert not stored.seen


def test_unknown_recipient_is_refused_by_lmtp(dovecot: DovecotServer):
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        dovecot.deliver("nobody-here@example.com", b"Subject: lost\r\n\r\nlost\r\n")


def test_folders_and_appended_flags_are_kept(dovecot: DovecotServer, mail_accounts: MailAccounts):
    bot = mail_accounts.bot
    dovecot.create_folder(bot, "Archive/2024")
    seen_uid = dovecot.append(bot, "Archive/2024", b"Subject: old\r\n\r\nold\r\n", ["\\Seen"])
    unseen_uid = dovecot.append(bot, "Archive/2024", b"Subject: new\r\n\r\nnew\r\n")
    stored = {message.uid: message for message in dovecot.fetch_all(bot, "Archive/2024")}
    assert stored[seen_uid].flags == {"\\Seen"}
    assert stored[unseen_uid].flags == frozenset()
    assert stored[unseen_uid].raw == b"Subject: new\r\n\r\nnew\r\n"


async def test_idle_sees_mail_delivered_by_another_connection(
    dovecot: DovecotServer, mail_accounts: MailAccounts
):
    bot = mail_accounts.bot
    async with imap_client(dovecot) as client:
        await login(client, bot)
        assert (await client.select("INBOX")).result == "OK"
        idle = await client.idle_start(timeout=TIMEOUT)
        raw = make_mail("alice@example.com", bot.address, "while idle").as_bytes()
        await asyncio.to_thread(dovecot.deliver, bot.address, raw)
        started = time.monotonic()
        pushed = await client.wait_server_push(timeout=5.0)
        elapsed = time.monotonic() - started
        client.idle_done()
        await asyncio.wait_for(idle, TIMEOUT)
    assert any(b"EXISTS" in line for line in pushed), pushed
    assert elapsed < 3.0


async def test_restart_keeps_mail_and_ports(dovecot: DovecotServer, mail_accounts: MailAccounts):
    bot = mail_accounts.bot
    raw = make_mail("alice@example.com", bot.address, "survives restart").as_bytes()
    await asyncio.to_thread(dovecot.deliver, bot.address, raw)
    ports = (dovecot.imap_port, dovecot.imaps_port, dovecot.lmtp_port)
    await asyncio.to_thread(dovecot.restart)
    assert (dovecot.imap_port, dovecot.imaps_port, dovecot.lmtp_port) == ports
    async with imap_client(dovecot) as client:
        await login(client, bot)
        assert len(await unseen_uids(client)) == 1


async def test_stopped_dovecot_refuses_connections(dovecot: DovecotServer):
    await asyncio.to_thread(dovecot.stop, graceful=False)
    try:
        with pytest.raises(OSError):
            await asyncio.wait_for(
                asyncio.open_connection(dovecot.host, dovecot.imap_port), TIMEOUT
            )
    finally:
        await asyncio.to_thread(dovecot.start)


# -- SMTP relay ---------------------------------------------------------------------------


async def test_mail_sent_through_relay_lands_in_recipient_mailbox(
    dovecot: DovecotServer, mail_accounts: MailAccounts, smtp_relay: SmtpRelay, certs: CertFiles
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    message = make_mail(bot.address, alice.address, "hello alice")
    await aiosmtplib.send(
        message,
        hostname=smtp_relay.host,
        port=smtp_relay.port,
        username=bot.address,
        password=bot.password,
        start_tls=True,
        tls_context=certs.client_context(),
        timeout=TIMEOUT,
    )
    (relayed,) = smtp_relay.received
    assert (relayed.mail_from, relayed.rcpt_tos) == (bot.address, (alice.address,))
    assert relayed.login == bot.address
    assert relayed.tls and relayed.delivered
    (stored,) = await dovecot.wait_for_messages(alice)
    assert b"Subject: hello alice" in stored.raw
    assert f"Return-Path: <{bot.address}>".encode() in stored.raw
    assert not stored.seen


async def test_relay_rejects_wrong_password_promptly(
    mail_accounts: MailAccounts, smtp_relay: SmtpRelay, certs: CertFiles
):
    bot = mail_accounts.bot
    started = time.monotonic()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await aiosmtplib.send(
            make_mail(bot.address, bot.address, "never sent"),
            hostname=smtp_relay.host,
            port=smtp_relay.port,
            username=bot.address,
            password="not-the-password",
            start_tls=True,
            tls_context=certs.client_context(),
            timeout=TIMEOUT,
        )
    assert refused.value.code == 535
    assert time.monotonic() - started < 2.0
    assert smtp_relay.received == []


async def test_relay_requires_auth_before_mail(
    mail_accounts: MailAccounts, smtp_relay: SmtpRelay, certs: CertFiles
):
    bot = mail_accounts.bot
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await aiosmtplib.send(
            make_mail(bot.address, bot.address, "anonymous"),
            hostname=smtp_relay.host,
            port=smtp_relay.port,
            start_tls=True,
            tls_context=certs.client_context(),
            timeout=TIMEOUT,
        )
    assert refused.value.code == 530


async def test_relay_with_implicit_tls_and_auth_delivers(
    dovecot: DovecotServer,
    mail_accounts: MailAccounts,
    make_smtp_relay: Callable[..., SmtpRelay],
    certs: CertFiles,
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    relay = make_smtp_relay(tls="implicit", credentials={bot.address: bot.password})
    await aiosmtplib.send(
        make_mail(bot.address, alice.address, "over implicit tls"),
        hostname=relay.host,
        port=relay.port,
        username=bot.address,
        password=bot.password,
        use_tls=True,
        tls_context=certs.client_context(),
        timeout=TIMEOUT,
    )
    assert relay.received[0].tls
    (stored,) = await dovecot.wait_for_messages(alice)
    assert b"Subject: over implicit tls" in stored.raw


async def test_relay_refuses_auth_before_starttls_by_default(
    mail_accounts: MailAccounts, smtp_relay: SmtpRelay
):
    bot = mail_accounts.bot
    client = aiosmtplib.SMTP(
        hostname=smtp_relay.host, port=smtp_relay.port, start_tls=False, timeout=TIMEOUT
    )
    async with client:
        await client.ehlo()
        assert client.supports_extension("starttls")
        assert not client.supports_extension("auth")
        with pytest.raises(aiosmtplib.SMTPException):
            await client.login(bot.address, bot.password)


async def test_relay_allows_plaintext_auth_on_loopback_when_asked(
    dovecot: DovecotServer,
    mail_accounts: MailAccounts,
    make_smtp_relay: Callable[..., SmtpRelay],
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    relay = make_smtp_relay(
        tls="none", credentials={bot.address: bot.password}, auth_require_tls=False
    )
    await aiosmtplib.send(
        make_mail(bot.address, alice.address, "in the clear"),
        hostname=relay.host,
        port=relay.port,
        username=bot.address,
        password=bot.password,
        start_tls=False,
        timeout=TIMEOUT,
    )
    assert not relay.received[0].tls
    (stored,) = await dovecot.wait_for_messages(alice)
    assert b"Subject: in the clear" in stored.raw


async def test_relay_with_untrusted_certificate_is_refused(
    make_smtp_relay: Callable[..., SmtpRelay], untrusted_certs: CertFiles, certs: CertFiles
):
    relay = make_smtp_relay(tls="implicit", certs=untrusted_certs)
    with pytest.raises(aiosmtplib.SMTPConnectError) as refused:
        await aiosmtplib.send(
            make_mail("a@example.com", "b@example.com", "refused"),
            hostname=relay.host,
            port=relay.port,
            use_tls=True,
            tls_context=certs.client_context(),
            timeout=TIMEOUT,
        )
    assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
    assert relay.received == []


async def test_relay_comes_back_on_the_same_port(
    dovecot: DovecotServer, mail_accounts: MailAccounts, make_smtp_relay: Callable[..., SmtpRelay]
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    relay = make_smtp_relay(tls="none")
    port = relay.port
    relay.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.send(
            make_mail(bot.address, alice.address, "while down"),
            hostname=relay.host,
            port=port,
            timeout=TIMEOUT,
        )
    relay.start()
    await aiosmtplib.send(
        make_mail(bot.address, alice.address, "after outage"),
        hostname=relay.host,
        port=relay.port,
        timeout=TIMEOUT,
    )
    assert relay.port == port
    (stored,) = await dovecot.wait_for_messages(alice)
    assert b"Subject: after outage" in stored.raw


async def test_relay_answers_451_when_delivery_fails(
    mail_accounts: MailAccounts, make_smtp_relay: Callable[..., SmtpRelay]
):
    relay = make_smtp_relay(tls="none")
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await aiosmtplib.send(
            make_mail(mail_accounts.bot.address, "nobody-here@example.com", "undeliverable"),
            hostname=relay.host,
            port=relay.port,
            timeout=TIMEOUT,
        )
    assert refused.value.code == 451
    assert not relay.received[0].delivered
