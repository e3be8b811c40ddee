"""Replies go out over a small pool of SMTP connections: reused between replies, one
slow send holds up no other conversation, and each conversation's replies keep their
order. Against a real aiosmtpd server in the test's event loop."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import policy

import attrs
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from spacebot_core.types import InboundMessage, OutboundResponse
from spacebot_email.adapter import EmailAdapter
from spacebot_email.normalize import to_inbound
from spacebot_email.parse import parse_mail
from spacebot_email.settings import EmailSettings, finalize

BOT = "bot@example.com"


@attrs.define
class Recorder:
    """Keeps what arrived, in order, with the connection it came on; slow on request."""

    arrived: list[tuple[str, tuple[str, int]]] = attrs.Factory(list)
    slow_text: str = "slowly"
    hang_up: bool = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        body = email.message_from_bytes(envelope.original_content, policy=policy.default)
        text = body.get_content()
        if self.slow_text in text:
            await asyncio.sleep(0.5)
        self.arrived.append((text.splitlines()[0], session.peer))
        if self.hang_up:
            # Like a server that drops a client after each mail: after the answer.
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 2.0.0 queued"


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, Recorder]]:
    """An SMTP server on a free loopback port, in this loop; closed afterwards."""
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: SMTP(recorder, hostname="mx.test", loop=loop), "127.0.0.1", 0
    )
    try:
        yield listener.sockets[0].getsockname()[1], recorder
    finally:
        listener.close()
        await listener.wait_closed()


def _adapter(port: int, pool_size: int = 2) -> EmailAdapter:
    settings = EmailSettings(
        imap_host="127.0.0.1",
        imap_port=1,
        imap_use_tls=False,
        imap_username=BOT,
        imap_password="unused",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_use_starttls=False,
        smtp_username=None,
        from_address=BOT,
        self_copy=False,
        smtp_pool_size=pool_size,
    )
    settings = attrs.evolve(finalize(settings, "email"), smtp_username=None)
    return EmailAdapter("email", settings)


def _message(subject: str) -> InboundMessage:
    raw = (
        f"From: alice@example.org\r\nTo: {BOT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\nhello\r\n"
    ).encode()
    return to_inbound(
        parse_mail(raw), runtime_key="email", folder="INBOX", uid=1, received_at=datetime.now(UTC)
    )


async def test_a_slow_send_holds_up_no_other_conversation_and_order_is_kept(server):
    port, recorder = server
    adapter = _adapter(port, pool_size=2)
    lunch, invoice = _message("lunch"), _message("invoice")
    assert lunch.conversation_id != invoice.conversation_id
    try:
        await asyncio.gather(
            adapter.spacebot_send(lunch, OutboundResponse.Text("first, slowly"), "d1"),
            adapter.spacebot_send(lunch, OutboundResponse.Text("second"), "d2"),
            adapter.spacebot_send(invoice, OutboundResponse.Text("other"), "d3"),
        )
    finally:
        await adapter.spacebot_stop()

    assert [text for text, _ in recorder.arrived] == ["other", "first, slowly", "second"]
    assert len({peer for _, peer in recorder.arrived}) == 2


async def test_connections_are_reused_between_replies(server):
    port, recorder = server
    adapter = _adapter(port, pool_size=2)
    try:
        for number in range(5):
            reply = OutboundResponse.Text(f"reply {number}")
            await adapter.spacebot_send(_message(f"mail {number}"), reply, f"d{number}")
    finally:
        await adapter.spacebot_stop()

    assert [text for text, _ in recorder.arrived] == [f"reply {n}" for n in range(5)]
    assert len({peer for _, peer in recorder.arrived}) == 1


async def test_a_connection_the_server_closed_is_replaced(server):
    port, recorder = server
    recorder.hang_up = True
    adapter = _adapter(port, pool_size=1)
    try:
        await adapter.spacebot_send(_message("one"), OutboundResponse.Text("first"), "d1")
        await asyncio.sleep(0.2)  # the server has hung up by now
        await adapter.spacebot_send(_message("two"), OutboundResponse.Text("second"), "d2")
    finally:
        await adapter.spacebot_stop()

    assert [text for text, _ in recorder.arrived] == ["first", "second"]
    assert len({peer for _, peer in recorder.arrived}) == 2
