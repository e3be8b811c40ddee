"""One logged-in IMAP connection over aioimaplib, and the few commands the bot needs.

Implicit TLS, STARTTLS, or plain TCP (to a loopback host only; the settings refuse
anything else): connecting is :mod:`.imap_connect`'s job. Every command has a timeout.
Messages are fetched with ``BODY.PEEK[]``, which never sets ``\\Seen`` by itself: the
bot marks a message seen only after it was handled. The responses are read by
:mod:`.imap_responses`, IDLE runs in :mod:`.imap_idle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from array import array
from collections.abc import AsyncIterator, Sequence

import aioimaplib
import attrs

from spacebot_core.errors import ChannelError
from spacebot_email.folder_names import quote_folder_name
from spacebot_email.imap_arguments import quote_search, uid_set, uid_sets
from spacebot_email.imap_auth import login_xoauth2
from spacebot_email.imap_connect import RECONNECT_HINT, Security, connect
from spacebot_email.imap_responses import (
    FetchCommand,
    FetchedMail,
    FolderState,
    announces_new_mail,
    parse_fetch,
    parse_list,
    parse_search,
    parse_select,
    parse_sizes,
    server_text,
)
from spacebot_email.oauth2 import OAuth2Error, TokenSource

log = logging.getLogger(__name__)

AUTH_FAILED_HINT = "Verify username and password; check if an app password is required"
XOAUTH2_FAILED_HINT = (
    "The server refused the OAuth2 token: check that it was issued for this account "
    "with the mail scope (Gmail: https://mail.google.com/)"
)
FLAGS_HINT = "Ensure the account has write permissions on the mailbox"


class FolderMissingError(ChannelError):
    """A configured folder does not exist on the server."""


@attrs.define(eq=False)
class ImapSession:
    """A logged-in IMAP connection; open with :meth:`open`, end with :meth:`close`."""

    client: aioimaplib.IMAP4
    host: str
    port: int
    username: str
    timeout: float
    selected: FolderState | None = None
    #: Held by a task that needs one folder selected for several commands in a row
    #: (see :meth:`using`): a fetch must not run after another task's SELECT.
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)
    #: Whether the server closed the connection (or it broke).
    lost: bool = attrs.field(default=False, init=False)
    #: Folders the server announced new mail in since they were last searched.
    _pushed: set[str] = attrs.field(factory=set, init=False, repr=False)
    #: Each folder's UIDNEXT when it was last searched.
    _searched_uidnext: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)

    @classmethod
    async def open(
        cls,
        *,
        host: str,
        port: int,
        security: Security,
        username: str,
        password: str | None,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        token_source: TokenSource | None = None,
    ) -> ImapSession:
        """Connect, secure the connection as asked, and log in.

        With ``token_source`` the login is XOAUTH2 with its access token (taken before
        connecting, so no connection idles while a token is fetched), else LOGIN with
        ``password``.

        :raises ChannelError: worded after the spec's troubleshooting table.
        """
        token = await token_source.token() if token_source is not None else None
        client = await connect(host, port, security, ssl_context, timeout)
        session = cls(client, host, port, username, timeout)
        session._watch_untagged()
        try:
            if token is None:
                response = await client.login(username, password or "")
            else:
                response = await login_xoauth2(client, username, token, timeout)
        except OAuth2Error:
            await session.close()
            raise
        except (TimeoutError, aioimaplib.AioImapException, OSError) as error:
            await session.close()
            raise ChannelError(
                f"IMAP login to {host}:{port} did not complete ({type(error).__name__})",
                "check the server and port, then try again",
            ) from None
        if response.result != "OK":
            await session.close()
            if token_source is not None:
                token_source.invalidate()  # revoked early, perhaps: the next try refreshes
            raise ChannelError(
                f"Authentication failed for {username} at IMAP {host}:{port}"
                f" ({server_text(response)})",
                AUTH_FAILED_HINT if token is None else XOAUTH2_FAILED_HINT,
            )
        return session

    async def close(self) -> None:
        """Log out and close the connection; never raises."""
        try:
            if not self.lost and self.client.get_state() not in ("LOGOUT", "STARTED"):
                await asyncio.wait_for(self.client.logout(), self.timeout)
        except Exception as error:  # the connection may already be gone
            log.debug("IMAP logout from %s failed: %s", self.host, error)
        self.lost = True  # closed: no command may follow
        # LOGOUT leaves the socket open, and a TLS close would wait for the peer.
        transport = self.client.protocol.transport if self.client.protocol else None
        if transport is not None:
            transport.abort()

    def has_capability(self, name: str) -> bool:
        """Whether the server announced a capability such as ``IDLE``."""
        return self.client.has_capability(name)

    def _watch_untagged(self) -> None:
        """Notice new-mail announcements and a lost connection, whatever is running.

        aioimaplib drops an untagged ``EXISTS`` that arrives during a FETCH, STORE or
        SEARCH ("ignored untagged response"), and the server does not repeat it in a
        later IDLE: the mail would wait for the next poll. So every untagged line is
        looked at on its way in, through the protocol object of this one connection.
        """
        protocol = self.client.protocol
        handle = protocol._untagged_response

        def untagged_response(line: bytes):  # type: ignore[no-untyped-def]
            pending = protocol.pending_sync_command
            # SELECT's own EXISTS is the folder's size, not news.
            if (
                self.selected is not None
                and announces_new_mail(line)
                and (pending is None or pending.name not in ("SELECT", "EXAMINE"))
            ):
                self._pushed.add(self.selected.name)
            return handle(line)

        protocol._untagged_response = untagged_response
        protocol.conn_lost_cb = self._connection_lost

    def _connection_lost(self, error: Exception | None) -> None:
        """aioimaplib's callback: fail the commands waiting for an answer, and an IDLE.

        aioimaplib leaves them waiting until their timeout (``timeout_secs``), which
        would delay the reconnect by that long after a server restart.
        """
        self.lost = True
        protocol = self.client.protocol
        pending = [protocol.pending_sync_command, *protocol.pending_async_commands.values()]
        for command in pending:
            if command is not None and not command._event.is_set():
                command._exception = aioimaplib.Abort("connection lost")
                command._event.set()
        protocol.idle_queue.put_nowait([b"BYE connection lost"])

    @contextlib.asynccontextmanager
    async def using(self, folder: str) -> AsyncIterator[FolderState]:
        """Hold the connection with ``folder`` selected (selected now if it was not).

        Everything that depends on the selected folder (fetch, store, search, IDLE)
        runs inside such a block, so that a concurrent task's SELECT cannot slip in.

        :raises FolderMissingError: the folder does not exist.
        """
        async with self.lock:
            state = self.selected
            if state is None or state.name != folder:
                state = await self.select(folder)
            yield state

    def has_new_mail(self, folder: str) -> bool:
        """Whether the server said that mail arrived in ``folder`` since it was searched.

        Announcements come as untagged ``EXISTS`` in the answer to any command, or as
        a higher UIDNEXT when the folder is selected again; a mail that arrives
        between a search and the next IDLE is announced that way, not in IDLE.
        """
        if self.mail_announced(folder):
            return True
        state = self.selected
        if state is None or state.name != folder or not state.uidnext:
            return False
        return state.uidnext > self._searched_uidnext.get(folder, state.uidnext)

    def mail_announced(self, folder: str) -> bool:
        """Whether an untagged ``EXISTS`` announced mail in ``folder`` since it was
        searched (the part of :meth:`has_new_mail` that can change during IDLE)."""
        return folder in self._pushed

    async def _command(self, what: str, call) -> aioimaplib.Response:
        """Run ``call`` (an aioimaplib command's coroutine) within the session's timeout.

        The command runs in the caller's task, not in one of its own as ``wait_for``
        would put it: so it is on the wire before the caller yields. The intake relies
        on that to have the next batch's FETCH sent before the runtime takes the CPU to
        handle the batch before (the server answers meanwhile).
        """
        if self.lost:
            call.close()  # never started: the connection is gone
            raise ChannelError(
                f"IMAP connection to {self.host}:{self.port} was lost before {what}",
                RECONNECT_HINT,
            )
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError:
            self.lost = True  # a command may still be pending: the connection is unusable
            raise ChannelError(
                f"IMAP server {self.host}:{self.port} did not answer {what} "
                f"within {self.timeout:g} s",
                "check the connection; spacebot reconnects by itself",
            ) from None
        except (aioimaplib.AioImapException, OSError) as error:
            self.lost = True
            raise ChannelError(
                f"IMAP connection to {self.host}:{self.port} broke during {what}: {error}",
                RECONNECT_HINT,
            ) from None

    async def select(self, folder: str) -> FolderState:
        """Select a folder for reading and flagging.

        :raises FolderMissingError: the folder does not exist (or cannot be opened).
        """
        response = await self._command(
            f"SELECT {folder}", self.client.select(quote_folder_name(folder))
        )
        if response.result != "OK":
            self.selected = None
            raise FolderMissingError(
                f"folder '{folder}' cannot be opened on {self.host} ({server_text(response)})",
                "check the name in folders = [...]; 'spacebot check' lists the folders that exist",
            )
        self.selected = parse_select(folder, response.lines)
        return self.selected

    async def list_folders(self) -> list[str]:
        """Every folder's name on the server, decoded."""
        return [name for name, _ in await self.list_folders_with_attributes()]

    async def list_folders_with_attributes(self) -> list[tuple[str, frozenset[str]]]:
        """Every folder's name, decoded, with the attributes LIST gives it: ``\\Sent``
        and the other RFC 6154 special uses where the server marks them, ``\\Noselect``.
        """
        response = await self._command("LIST", self.client.list('""', "*"))
        return parse_list(response.lines)

    async def search_unseen(self, without_keywords: Sequence[str] = ()) -> array[int]:
        """UIDs of the selected folder's messages without ``\\Seen``, oldest first.

        :param without_keywords: also leave out messages carrying any of these keywords.
        """
        criteria = ["UNSEEN"]
        for keyword in without_keywords:
            criteria += ["UNKEYWORD", keyword]
        if self.selected is not None:
            # Announcements from here on are news to this search's caller.
            self._pushed.discard(self.selected.name)
            self._searched_uidnext[self.selected.name] = self.selected.uidnext
        return await self._search("UID SEARCH UNSEEN", criteria)

    async def search_header(self, name: str, value: str) -> array[int]:
        """UIDs of the selected folder's messages whose header ``name`` contains ``value``."""
        return await self.search_header_any(name, [value])

    async def search_header_any(self, name: str, values: Sequence[str]) -> array[int]:
        """UIDs of the selected folder's messages whose header ``name`` contains any of
        ``values``, in one ``UID SEARCH`` (``OR HEADER ... OR HEADER ... HEADER ...``).

        :raises ValueError: a value holds a line break or NUL (it cannot be quoted).
        """
        criteria: list[str] = []
        for position, value in enumerate(values):
            if position < len(values) - 1:
                criteria.append("OR")
            criteria += ["HEADER", name, quote_search(value)]
        if not criteria:
            return array("I")
        return await self._search(f"UID SEARCH HEADER {name}", criteria)

    async def _search(self, what: str, criteria: list[str]) -> array[int]:
        """The UIDs found, ascending (see :func:`.imap_responses.parse_search`)."""
        response = await self._command(what, self.client.uid_search(*criteria, charset=None))
        return parse_search(response.lines)

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """Each UID's size in bytes, without downloading bodies."""
        if not uids:
            return {}
        response = await self._command(
            "UID FETCH RFC822.SIZE", self._uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
        )
        return parse_sizes(response.lines)

    async def fetch(self, uids: Sequence[int]) -> list[FetchedMail]:
        """The raw bytes and flags of the given UIDs of the selected folder.

        One command for all of them; its cost grows linearly with the mails
        (:class:`.imap_responses.FetchCommand`), the memory with their bytes.
        """
        if not uids or self.selected is None:
            return []
        response = await self._command(
            "UID FETCH BODY.PEEK[]",
            self._uid_fetch(uid_set(uids), "(UID FLAGS BODY.PEEK[])"),
        )
        return list(parse_fetch(response.lines, self.selected))

    async def fetch_partial(self, uids: Sequence[int], max_bytes: int) -> list[FetchedMail]:
        """The first ``max_bytes`` of each message (headers, then the start of the body).

        For messages over the size limit: they are never downloaded whole. The result
        is marked ``partial``, with the whole message's size.
        """
        if not uids or self.selected is None:
            return []
        response = await self._command(
            "UID FETCH BODY.PEEK[]<partial>",
            self._uid_fetch(uid_set(uids), f"(UID FLAGS RFC822.SIZE BODY.PEEK[]<0.{max_bytes}>)"),
        )
        return list(parse_fetch(response.lines, self.selected, partial=True))

    async def execute(self, what: str, command: aioimaplib.Command) -> aioimaplib.Response:
        """Run an aioimaplib command object with this session's timeout and error
        handling: a subclass for what aioimaplib lacks (literals in a search, see
        :mod:`.search`).
        """
        return await self._command(what, self.client.protocol.execute(command))

    async def _uid_fetch(self, message_set: str, items: str) -> aioimaplib.Response:
        """``UID FETCH`` through :class:`.imap_responses.FetchCommand` (its timeout is
        ``_command``'s)."""
        protocol = self.client.protocol
        if protocol.state != "SELECTED":
            raise aioimaplib.Abort(f"command UID FETCH illegal in state {protocol.state}")
        command = FetchCommand(
            protocol.new_tag(), message_set, items, prefix="UID", loop=protocol.loop
        )
        return await protocol.execute(command)

    async def add_flags(self, uids: Sequence[int], flags: str) -> None:
        """Add flags (``\\Seen``, a keyword) to UIDs of the selected folder.

        Many UIDs go in one command (runs collapsed: ``1:500``), split only where the
        command line would grow too long.

        :raises ChannelError: the server refused (a read-only mailbox, for instance).
        """
        for part in uid_sets(uids):
            response = await self._command(
                f"UID STORE {flags}",
                self.client.uid("store", part, f"+FLAGS.SILENT ({flags})"),
            )
            if response.result != "OK":
                folder = self.selected.name if self.selected else "?"
                raise ChannelError(
                    f"the server refused to set {flags} in '{folder}' ({server_text(response)})",
                    FLAGS_HINT,
                )

    async def remove_flags(self, uids: Sequence[int], flags: str) -> None:
        """Take flags (keywords) off UIDs of the selected folder."""
        if not uids:
            return
        response = await self._command(
            f"UID STORE -{flags}",
            self.client.uid("store", uid_set(uids), f"-FLAGS.SILENT ({flags})"),
        )
        if response.result != "OK":
            folder = self.selected.name if self.selected else "?"
            raise ChannelError(
                f"the server refused to remove {flags} in '{folder}' ({server_text(response)})",
                FLAGS_HINT,
            )

    async def append(self, folder: str, raw: bytes, flags: str | None = None) -> None:
        """Store a message in a folder (used for a copy of sent mail and by tests)."""
        response = await self._command(
            f"APPEND {folder}",
            self.client.append(raw, mailbox=quote_folder_name(folder), flags=flags),
        )
        if response.result != "OK":
            raise ChannelError(f"cannot store a message in '{folder}': {server_text(response)}")

    async def noop(self) -> None:
        """Ask the server for news; proves the connection is alive."""
        await self._command("NOOP", self.client.noop())
