"""A pool of SMTP connections shared by sends, each conversation's sends in order.

Connections stay open between sends, so a reply costs no new connect, TLS handshake or
login; a connection the server closed is replaced, and a send it broke is retried once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib
import attrs

from spacebot_core.errors import ChannelError
from spacebot_email.smtp import SmtpSender, SmtpSession

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class SmtpPool:
    """Up to ``size`` SMTP connections, kept open between sends and shared by them.

    A send takes an idle connection, or opens one while fewer than ``size`` are open,
    and gives it back afterwards: up to ``size`` sends run at once, each on its own
    connection, so one slow send holds up no other, and a reply costs no new connect,
    TLS handshake or login. Sends with the same ``order_key`` (a conversation) go out
    one after another, in the order they were asked for.

    A connection the server closed, or left unused longer than ``max_idle_secs``
    (servers drop idle clients after a few minutes), is replaced rather than reused;
    a reused one that turns out to be closed when the send starts is retried once on
    a fresh connection, as the server cannot have accepted the mail.
    """

    sender: SmtpSender
    size: int = 2
    max_idle_secs: float = 60.0
    _idle: list[tuple[SmtpSession, float]] = attrs.field(factory=list, init=False, repr=False)
    _slots: asyncio.Semaphore | None = attrs.field(default=None, init=False, repr=False)
    _order: dict[str, tuple[asyncio.Lock, int]] = attrs.field(factory=dict, init=False, repr=False)

    async def send(
        self,
        message: EmailMessage,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        order_key: str | None = None,
    ) -> None:
        """Send one message over a pooled connection (see :meth:`SmtpSession.send`).

        :param order_key: sends with the same key never overlap and keep their order.
        :raises ChannelError: any failure, with a hint for the user.
        """
        if order_key is None:
            await self._send(message, sender, recipients)
            return
        lock, users = self._order.get(order_key) or (asyncio.Lock(), 0)
        self._order[order_key] = (lock, users + 1)
        try:
            async with lock:
                await self._send(message, sender, recipients)
        finally:
            lock, users = self._order[order_key]
            if users <= 1:
                del self._order[order_key]
            else:
                self._order[order_key] = (lock, users - 1)

    async def close(self) -> None:
        """Close every idle connection (QUIT, bounded by the timeout)."""
        idle, self._idle = self._idle, []
        for session, _ in idle:
            await session.close()

    async def _send(
        self, message: EmailMessage, sender: str | None, recipients: Sequence[str] | None
    ) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.size))
        async with self._slots:
            session, reused = await self._take()
            try:
                await session.send(message, sender=sender, recipients=recipients)
            except ChannelError as error:
                await session.close()
                if not (reused and _disconnected(error)):
                    raise
                logger.debug(
                    "SMTP connection to %s was closed; sending on a new one", self.sender.address
                )
                session, _ = await self._open()
                try:
                    await session.send(message, sender=sender, recipients=recipients)
                except BaseException:
                    await session.close()
                    raise
            except BaseException:
                await session.close()
                raise
            self._idle.append((session, time.monotonic()))

    async def _take(self) -> tuple[SmtpSession, bool]:
        """An idle connection still fit to use, else a new one; and whether it is reused."""
        now = time.monotonic()
        while self._idle:
            session, since = self._idle.pop()
            if session.is_open and now - since < self.max_idle_secs:
                return session, True
            await session.close()
        return await self._open()

    async def _open(self) -> tuple[SmtpSession, bool]:
        session = self.sender.session()
        await session.open()
        return session, False


def _disconnected(error: ChannelError) -> bool:
    """Whether a send failed because the server had closed the connection."""
    return isinstance(error.__cause__, aiosmtplib.SMTPServerDisconnected | ConnectionError)
