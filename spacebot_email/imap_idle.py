"""Waiting in IMAP IDLE (RFC 2177) on a session's selected folder until new mail comes.

Functions that take the :class:`~spacebot_email.imap.ImapSession` they run on: start
IDLE, read what the server pushes, and always end it with ``DONE``, a cancellation
included, so that the connection can take commands again. What the server announced is
tracked by the session itself (:meth:`~spacebot_email.imap.ImapSession.has_new_mail`),
as an announcement can arrive in the answer to any command, not only during IDLE.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aioimaplib

from spacebot_core.errors import ChannelError
from spacebot_email.imap_connect import RECONNECT_HINT

if TYPE_CHECKING:
    from spacebot_email.imap import ImapSession

#: How long one IDLE may last before it is ended and issued again. RFC 2177 lets a
#: server log out a client after 30 minutes without a command (Gmail: 29); ending
#: IDLE well before that keeps the connection and proves it is still alive.
IDLE_RENEW_SECS = 25 * 60


async def idle_until_new_mail(session: ImapSession, timeout: float) -> bool:
    """Wait in IDLE on the selected folder until the server announces new mail.

    Returns at once when news came before (see :meth:`.imap.ImapSession.has_new_mail`).
    Ends IDLE with ``DONE`` however the wait ends, a cancellation included, so that the
    connection can take commands again.

    :param timeout: the longest wait in seconds; keep it under
        :data:`IDLE_RENEW_SECS`.
    :return: True when new mail was announced, False when ``timeout`` passed.
    :raises ChannelError: the server refused IDLE or the connection broke.
    """
    _raise_if_cancelled()
    if session.lost:
        raise ChannelError(f"IMAP connection to {session.host}:{session.port} is closed")
    if session.selected is None:
        raise ChannelError("IDLE needs a selected folder")
    folder = session.selected.name
    _drain_idle_queue(session)
    if session.has_new_mail(folder):
        return True
    starting = asyncio.ensure_future(session.client.idle_start(timeout))
    try:
        idling = await asyncio.wait_for(asyncio.shield(starting), session.timeout)
    except asyncio.CancelledError:
        await _abandon_idle(session, starting)
        raise
    except (TimeoutError, aioimaplib.AioImapException, OSError) as error:
        session.lost = True  # IDLE may or may not be running: the connection is unusable
        starting.cancel()
        raise ChannelError(
            f"IMAP server {session.host}:{session.port} did not start IDLE in '{folder}'"
            f" ({error or type(error).__name__})",
            RECONNECT_HINT,
        ) from None
    try:
        _raise_if_cancelled()
        pushed = await _wait_for_push(session, folder, timeout)
    except BaseException:
        await _end_idle(session, idling, quietly=True)
        raise
    await _end_idle(session, idling)
    return pushed


async def _wait_for_push(session: ImapSession, folder: str, timeout: float) -> bool:
    """Read what the server sends during IDLE until new mail, time up, or a break."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        # aioimaplib's own timer ends the wait at ``timeout``; the margin only
        # guards against that timer never firing.
        remaining = max(0.0, deadline - loop.time()) + session.timeout
        try:
            lines = await session.client.wait_server_push(remaining)
        except TimeoutError:
            return False
        _raise_if_cancelled()
        if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
            return False
        if session.lost or any(bytes(line).startswith(b"BYE") for line in lines):
            session.lost = True
            raise ChannelError(
                f"IMAP server {session.host}:{session.port} closed the connection during IDLE",
                RECONNECT_HINT,
            )
        if session.mail_announced(folder):
            return True


async def _abandon_idle(session: ImapSession, starting: asyncio.Future) -> None:
    """Cancelled while IDLE was starting: the command may be out, so end it, or a
    LOGOUT after it would wait for an IDLE that never ends."""
    try:
        idling = await asyncio.wait_for(asyncio.shield(starting), session.timeout)
    except Exception:  # it did not start, or the connection is gone
        session.lost = True
        starting.cancel()
        return
    await _end_idle(session, idling, quietly=True)


async def _end_idle(session: ImapSession, idling: asyncio.Future, *, quietly: bool = False) -> None:
    """Send ``DONE`` and wait for the server to end IDLE.

    :param quietly: on the way out of an error or a cancellation: never raise.
    """
    if not idling.done() and not session.lost:
        session.client.idle_done()
        try:
            await asyncio.wait_for(asyncio.shield(idling), session.timeout)
        except (TimeoutError, aioimaplib.AioImapException, OSError) as error:
            if not quietly:
                raise ChannelError(
                    f"IMAP server {session.host}:{session.port} did not end IDLE ({error!r})",
                    RECONNECT_HINT,
                ) from None
    if not idling.done():
        idling.cancel()
    elif not idling.cancelled() and idling.exception() is not None and not quietly:
        raise ChannelError(
            f"IDLE failed on {session.host}:{session.port} ({idling.exception()})",
            RECONNECT_HINT,
        )


def _drain_idle_queue(session: ImapSession) -> None:
    """Forget what an earlier IDLE left queued; new mail is tracked separately."""
    queue = session.client.protocol.idle_queue
    while not queue.empty():
        queue.get_nowait()


def _raise_if_cancelled() -> None:
    """Raise the cancellation that Python 3.11's ``wait_for`` may have swallowed.

    When a command's answer and a cancellation arrive together, ``wait_for`` returns
    the answer and the cancellation is lost; an IDLE begun after that would outlive
    the task that was told to stop, and block the LOGOUT behind it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
