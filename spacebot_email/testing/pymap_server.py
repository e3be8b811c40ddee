"""An in-memory IMAP server (pymap) on loopback, run on the caller's event loop.

`PymapServer` embeds the pure-Python IMAP server `pymap <https://pypi.org/project/pymap/>`_
with its in-memory ``dict`` backend, in this process, with no files and no subprocess.
It is built from the same classes ``pymap dict`` uses (the backend's `Login` and `Config`,
`IMAPServer`, a PROXY-protocol reader), but started on a port of our choosing and with
any number of users added at runtime (``pymap dict`` knows one ``demouser``).

Facts that shape it:

- pymap answers on the event loop that started it; its mailboxes are asyncio objects,
  so anything that touches them from another thread must go through that loop
  (`PymapServer.deliver_from_thread` does, for `SmtpRelay`).
- Users live in ``Login.users_dict``, written through ``Identity.set`` exactly as
  pymap's own demo user and its admin ``SetUser`` call are.
- Passwords are kept in clear (pysasl's ``Cleartext``): without passlib the default is
  500,000 rounds of PBKDF2 (0.1 s here) per login and per add, for throw-away accounts.
- Plain ``LOGIN`` is offered on loopback connections; STARTTLS is not offered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
from argparse import Namespace
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config, Identity, Login
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials.flag import Flag
from pymap.user import UserMetadata
from pysasl.hashing import Cleartext

if TYPE_CHECKING:
    from spacebot_email.testing.smtp_relay import Deliver

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds a delivery from another thread may wait for the server's event loop."""


class PymapError(Exception):
    """The embedded IMAP server cannot do what was asked (unknown user, not running)."""


class _EmbeddedConfig(Config):
    """The dict backend's config, without the DNS lookup of the greeting."""

    @property
    def greeting(self) -> bytes:
        """The IMAP greeting; pymap's default calls `socket.getfqdn`, which can hang."""
        return b"Server ready (spacebot demo, pymap)"


class PymapServer:
    """pymap's in-memory IMAP server on ``host``, serving from the running event loop.

    Start it with ``await start()`` inside the loop that will serve it, add users
    with `add_user`, stop it with ``await stop()`` (idempotent). Mailboxes are lost at
    stop.

    :param host: the address to listen on (keep it loopback: logins are in clear).
    :param port: the port; a free one when 0, read back from `port` after `start`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._config = _EmbeddedConfig(
            Namespace(passlib_cfg=None, proxy_protocol=None, inherited_sockets=None),
            host=host,
            port=port,
            demo_data=False,
            demo_user="",
            demo_password="",
            tls_enabled=False,
            ssl_context=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
            hash_context=Cleartext(),
            cpu_subsystem=Subsystem.for_asyncio(),
            reject_dnsbl=False,
        )
        self._login = Login(self._config)
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    @property
    def users(self) -> list[str]:
        """The login names of every user, in the order they were added."""
        return list(self._login.users_dict)

    async def start(self) -> None:
        """Listen on `host` and `port` (as ``pymap``'s IMAP service does) and serve."""
        if self._server is not None:
            raise PymapError("the IMAP server is already running")
        self._config.apply_context()
        callback = ProxyProtocolReader(self._config.proxy_protocol).get_callback(
            IMAPServer(self._login, self._config)
        )
        self._server = await asyncio.start_server(callback, host=self.host, port=self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        log.info("pymap IMAP server started on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening; connections still open end when the event loop ends."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
            log.info("pymap IMAP server on %s:%s stopped", self.host, self.port)

    async def add_user(
        self, name: str, password: str, *, mailboxes: Iterable[str] = ("Sent",)
    ) -> None:
        """Add a user who can log in with ``password``; INBOX plus ``mailboxes`` exist
        and are subscribed (mail clients such as Thunderbird show subscribed ones only).

        :param name: the login name, typically a mail address; `deliver_from_thread`
            delivers to the user whose name is the recipient address.
        """
        metadata = UserMetadata(self._config, name, password=password)
        await self._identity(name).set(metadata)
        async with self._identity(name).new_session() as session:
            for mailbox in mailboxes:
                await session.create_mailbox(mailbox)
                await session.subscribe(mailbox)

    async def append(
        self, user: str, raw: bytes, *, mailbox: str = "INBOX", flags: Iterable[str] = ()
    ) -> None:
        """Store a message in a user's mailbox, as an IMAP APPEND of theirs would.

        :raises PymapError: the user does not exist.
        """
        if user not in self._login.users_dict:
            raise PymapError(f"no mailbox for {user!r} on the demo IMAP server")
        message = AppendMessage(
            raw, datetime.now(UTC), frozenset(Flag(flag.encode()) for flag in flags)
        )
        async with self._identity(user).new_session() as session:
            await session.append_messages(mailbox, [message])

    def deliver_from_thread(self, timeout: float = DEFAULT_TIMEOUT) -> Deliver:
        """A `spacebot_email.testing.Deliver` callable for `SmtpRelay`: each mail goes
        into the INBOX of the user named like the recipient address (case ignored).

        It runs in the relay's worker thread and hands the work to this server's event
        loop, where the mailboxes live; an unknown recipient or a loop that does not
        answer within ``timeout`` seconds raises, and the relay answers 451.
        """

        def deliver(recipient: str, raw: bytes, *, sender: str) -> None:
            if self._loop is None or self._server is None:
                raise PymapError("the IMAP server is not running")
            user = self._user_for(recipient)
            future = asyncio.run_coroutine_threadsafe(self.append(user, raw), self._loop)
            try:
                future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise PymapError(f"delivery to {recipient} took over {timeout:g} s") from None
            log.info("pymap: delivered a mail from %s to %s", sender or "<>", user)

        return deliver

    def _user_for(self, address: str) -> str:
        """The user whose login name is ``address``, ignoring case."""
        for name in self._login.users_dict:
            if name.lower() == address.strip().lower():
                return name
        raise PymapError(f"no mailbox for {address!r} on the demo IMAP server")

    def _identity(self, name: str) -> Identity:
        return Identity(name, self._login, None, frozenset())
