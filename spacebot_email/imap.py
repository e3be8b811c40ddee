"""One logged-in IMAP connection over aioimaplib, and the few commands the bot needs.

Implicit TLS, STARTTLS, or plain TCP (to a loopback host only; the settings refuse
anything else). Every command has a timeout. Messages are fetched with
``BODY.PEEK[]``, which never sets ``\\Seen`` by itself: the bot marks a message seen
only after it was handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from array import array
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Literal

import aioimaplib
import attrs

from spacebot_core.errors import ChannelError
from spacebot_email.folder_names import decode_folder_name, quote_folder_name
from spacebot_email.imap_auth import login_xoauth2
from spacebot_email.oauth2 import OAuth2Error, TokenSource

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "plain"]

AUTH_FAILED_HINT = "Verify username and password; check if an app password is required"
XOAUTH2_FAILED_HINT = (
    "The server refused the OAuth2 token: check that it was issued for this account "
    "with the mail scope (Gmail: https://mail.google.com/)"
)
TLS_FAILED_HINT = (
    "Gmail/Outlook use imap_use_tls = true on port 993; for a server with a private CA "
    "set tls_ca_file"
)
FLAGS_HINT = "Ensure the account has write permissions on the mailbox"
RECONNECT_HINT = "spacebot reconnects by itself"

#: How long one IDLE may last before it is ended and issued again. RFC 2177 lets a
#: server log out a client after 30 minutes without a command (Gmail: 29); ending
#: IDLE well before that keeps the connection and proves it is still alive.
IDLE_RENEW_SECS = 25 * 60
#: A UID set longer than this is sent over several commands: servers limit the length
#: of a command line (Dovecot: 64 KB; some, 8 KB).
MAX_UID_SET_CHARS = 4000

_FETCH_START = re.compile(rb"^(\d+) FETCH \(")
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_UIDNEXT = re.compile(rb"UIDNEXT (\d+)")
_SEARCH_LINE = re.compile(rb"^(?:SEARCH)?[\d ]*$")
_NUMBER = re.compile(rb"\d+")
#: Untagged responses that announce new mail in the selected folder (``* 3 EXISTS``).
_NEW_MAIL = re.compile(rb"^\* \d+ (?:EXISTS|RECENT)$")
_PERMANENT_FLAGS = re.compile(rb"\[PERMANENTFLAGS \(([^)]*)\)")
_LIST_LINE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')


class FolderMissingError(ChannelError):
    """A configured folder does not exist on the server."""


@attrs.frozen
class FetchedMail:
    """One message as fetched: where it is, its flags, and its raw bytes."""

    folder: str
    uidvalidity: int
    uid: int
    flags: tuple[str, ...]
    raw: bytes = attrs.field(repr=lambda raw: f"<{len(raw)} bytes>")
    #: The whole message's size on the server (``RFC822.SIZE``).
    size: int = attrs.field(default=0)
    #: Only the first bytes were fetched, because the message is over the size limit.
    partial: bool = False


@attrs.frozen
class FolderState:
    """What SELECT said about a folder."""

    name: str
    uidvalidity: int
    exists: int
    writable: bool = True
    #: The UID the next message will get; 0 when the server did not say.
    uidnext: int = 0


def uid_sets(uids: Iterable[int], max_chars: int = MAX_UID_SET_CHARS) -> Iterator[str]:
    """UIDs as IMAP sequence sets of at most about ``max_chars`` characters each."""
    runs = uid_set(uids).split(",") if uids else []
    part: list[str] = []
    length = 0
    for run in runs:
        if part and length + len(run) + 1 > max_chars:
            yield ",".join(part)
            part, length = [], 0
        part.append(run)
        length += len(run) + 1
    if part:
        yield ",".join(part)


def uid_set(uids: Iterable[int]) -> str:
    """UIDs as an IMAP sequence set, runs collapsed: ``1:3,7,9:10``."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    start = previous = None
    for uid in ordered:
        if start is None:
            start = previous = uid
        elif uid == previous + 1:
            previous = uid
        else:
            runs.append(f"{start}:{previous}" if start != previous else str(start))
            start = previous = uid
    if start is not None:
        runs.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(runs)


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
        client = await _connect(host, port, security, ssl_context, timeout)
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
                f" ({_server_text(response)})",
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
                and _NEW_MAIL.match(line)
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
        if folder in self._pushed:
            return True
        state = self.selected
        if state is None or state.name != folder or not state.uidnext:
            return False
        return state.uidnext > self._searched_uidnext.get(folder, state.uidnext)

    async def _command(self, what: str, call) -> aioimaplib.Response:
        if self.lost:
            call.close()  # never started: the connection is gone
            raise ChannelError(
                f"IMAP connection to {self.host}:{self.port} was lost before {what}",
                RECONNECT_HINT,
            )
        try:
            return await asyncio.wait_for(call, self.timeout)
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
                f"folder '{folder}' cannot be opened on {self.host} ({_server_text(response)})",
                "check the name in folders = [...]; 'spacebot check' lists the folders that exist",
            )
        uidvalidity = 0
        exists = 0
        uidnext = 0
        for line in response.lines:
            if isinstance(line, bytes | bytearray):
                if match := _UIDVALIDITY.search(line):
                    uidvalidity = int(match.group(1))
                if match := _UIDNEXT.search(line):
                    uidnext = int(match.group(1))
                if line.endswith(b" EXISTS"):
                    exists = int(line.split()[0])
        writable = _can_set_seen([bytes(line) for line in response.lines])
        self.selected = FolderState(folder, uidvalidity, exists, writable, uidnext)
        return self.selected

    async def list_folders(self) -> list[str]:
        """Every folder's name on the server, decoded."""
        return [name for name, _ in await self.list_folders_with_attributes()]

    async def list_folders_with_attributes(self) -> list[tuple[str, frozenset[str]]]:
        """Every folder's name, decoded, with the attributes LIST gives it: ``\\Sent``
        and the other RFC 6154 special uses where the server marks them, ``\\Noselect``.
        """
        response = await self._command("LIST", self.client.list('""', "*"))
        folders = []
        for line in response.lines:
            if isinstance(line, bytes | bytearray) and (match := _LIST_LINE.match(bytes(line))):
                name = decode_folder_name(match.group("name").decode().strip('"'))
                folders.append((name, frozenset(match.group("attrs").decode().split())))
        return folders

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
            criteria += ["HEADER", name, _quote_search(value)]
        if not criteria:
            return array("I")
        return await self._search(f"UID SEARCH HEADER {name}", criteria)

    async def _search(self, what: str, criteria: list[str]) -> array[int]:
        """The UIDs found, ascending, as an array of 4-byte numbers: a search finding
        50,000 mails then holds 200 KB, where a list of ints holds 4 MB."""
        response = await self._command(what, self.client.uid_search(*criteria, charset=None))
        # aioimaplib hands over the untagged "* SEARCH 1 2 3" as b"1 2 3"; the last
        # line is the tagged completion text.
        uids = array("I")
        for line in response.lines[:-1]:
            if _SEARCH_LINE.match(line):
                uids.extend(int(number.group()) for number in _NUMBER.finditer(line))
        if any(uids[index] > uids[index + 1] for index in range(len(uids) - 1)):
            uids = array("I", sorted(uids))
        return uids

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """Each UID's size in bytes, without downloading bodies."""
        if not uids:
            return {}
        response = await self._command(
            "UID FETCH RFC822.SIZE", self._uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
        )
        sizes: dict[int, int] = {}
        for line in response.lines:
            if isinstance(line, bytes | bytearray):
                uid, size = _UID.search(line), _SIZE.search(line)
                if uid and size:
                    sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    async def fetch(self, uids: Sequence[int]) -> list[FetchedMail]:
        """The raw bytes and flags of the given UIDs of the selected folder.

        One command for all of them: keep ``uids`` to about 100 (aioimaplib takes time
        that grows with the square of the response's lines).
        """
        if not uids or self.selected is None:
            return []
        response = await self._command(
            "UID FETCH BODY.PEEK[]",
            self._uid_fetch(uid_set(uids), "(UID FLAGS BODY.PEEK[])"),
        )
        return list(_parse_fetch(response.lines, self.selected))

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
        return list(_parse_fetch(response.lines, self.selected, partial=True))

    async def execute(self, what: str, command: aioimaplib.Command) -> aioimaplib.Response:
        """Run an aioimaplib command object with this session's timeout and error
        handling: a subclass for what aioimaplib lacks (literals in a search, see
        :mod:`.search`).
        """
        return await self._command(what, self.client.protocol.execute(command))

    async def _uid_fetch(self, message_set: str, items: str) -> aioimaplib.Response:
        """``UID FETCH`` through :class:`_FetchCommand` (its timeout is ``_command``'s)."""
        protocol = self.client.protocol
        if protocol.state != "SELECTED":
            raise aioimaplib.Abort(f"command UID FETCH illegal in state {protocol.state}")
        command = _FetchCommand(
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
                    f"the server refused to set {flags} in '{folder}' ({_server_text(response)})",
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
                f"the server refused to remove {flags} in '{folder}' ({_server_text(response)})",
                FLAGS_HINT,
            )

    async def append(self, folder: str, raw: bytes, flags: str | None = None) -> None:
        """Store a message in a folder (used for a copy of sent mail and by tests)."""
        response = await self._command(
            f"APPEND {folder}",
            self.client.append(raw, mailbox=quote_folder_name(folder), flags=flags),
        )
        if response.result != "OK":
            raise ChannelError(f"cannot store a message in '{folder}': {_server_text(response)}")

    async def noop(self) -> None:
        """Ask the server for news; proves the connection is alive."""
        await self._command("NOOP", self.client.noop())

    async def idle(self, timeout: float) -> bool:
        """Wait in IDLE on the selected folder until the server announces new mail.

        Returns at once when news came before (see :meth:`has_new_mail`). Ends IDLE
        with ``DONE`` however the wait ends, a cancellation included, so that the
        connection can take commands again.

        :param timeout: the longest wait in seconds; keep it under
            :data:`IDLE_RENEW_SECS`.
        :return: True when new mail was announced, False when ``timeout`` passed.
        :raises ChannelError: the server refused IDLE or the connection broke.
        """
        _raise_if_cancelled()
        if self.lost:
            raise ChannelError(f"IMAP connection to {self.host}:{self.port} is closed")
        if self.selected is None:
            raise ChannelError("IDLE needs a selected folder")
        folder = self.selected.name
        self._drain_idle_queue()
        if self.has_new_mail(folder):
            return True
        starting = asyncio.ensure_future(self.client.idle_start(timeout))
        try:
            idling = await asyncio.wait_for(asyncio.shield(starting), self.timeout)
        except asyncio.CancelledError:
            await self._abandon_idle(starting)
            raise
        except (TimeoutError, aioimaplib.AioImapException, OSError) as error:
            self.lost = True  # IDLE may or may not be running: the connection is unusable
            starting.cancel()
            raise ChannelError(
                f"IMAP server {self.host}:{self.port} did not start IDLE in '{folder}'"
                f" ({error or type(error).__name__})",
                RECONNECT_HINT,
            ) from None
        try:
            _raise_if_cancelled()
            pushed = await self._wait_for_push(folder, timeout)
        except BaseException:
            await self._end_idle(idling, quietly=True)
            raise
        await self._end_idle(idling)
        return pushed

    async def _wait_for_push(self, folder: str, timeout: float) -> bool:
        """Read what the server sends during IDLE until new mail, time up, or a break."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # aioimaplib's own timer ends the wait at ``timeout``; the margin only
            # guards against that timer never firing.
            remaining = max(0.0, deadline - loop.time()) + self.timeout
            try:
                lines = await self.client.wait_server_push(remaining)
            except TimeoutError:
                return False
            _raise_if_cancelled()
            if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                return False
            if self.lost or any(bytes(line).startswith(b"BYE") for line in lines):
                self.lost = True
                raise ChannelError(
                    f"IMAP server {self.host}:{self.port} closed the connection during IDLE",
                    RECONNECT_HINT,
                )
            if folder in self._pushed:
                return True

    async def _abandon_idle(self, starting: asyncio.Future) -> None:
        """Cancelled while IDLE was starting: the command may be out, so end it, or a
        LOGOUT after it would wait for an IDLE that never ends."""
        try:
            idling = await asyncio.wait_for(asyncio.shield(starting), self.timeout)
        except Exception:  # it did not start, or the connection is gone
            self.lost = True
            starting.cancel()
            return
        await self._end_idle(idling, quietly=True)

    async def _end_idle(self, idling: asyncio.Future, *, quietly: bool = False) -> None:
        """Send ``DONE`` and wait for the server to end IDLE.

        :param quietly: on the way out of an error or a cancellation: never raise.
        """
        if not idling.done() and not self.lost:
            self.client.idle_done()
            try:
                await asyncio.wait_for(asyncio.shield(idling), self.timeout)
            except (TimeoutError, aioimaplib.AioImapException, OSError) as error:
                if not quietly:
                    raise ChannelError(
                        f"IMAP server {self.host}:{self.port} did not end IDLE ({error!r})",
                        RECONNECT_HINT,
                    ) from None
        if not idling.done():
            idling.cancel()
        elif not idling.cancelled() and idling.exception() is not None and not quietly:
            raise ChannelError(
                f"IDLE failed on {self.host}:{self.port} ({idling.exception()})", RECONNECT_HINT
            )

    def _drain_idle_queue(self) -> None:
        """Forget what an earlier IDLE left queued; new mail is tracked separately."""
        queue = self.client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()


class _FetchCommand(aioimaplib.aioimaplib.FetchCommand):
    """aioimaplib's FETCH command, with its end-of-message check in constant time.

    aioimaplib asks after every line whether the last message's parentheses are
    closed, by joining and scanning every line since that message's start: with many
    lines that grows with their square. This keeps a running count instead. It has no
    inactivity timer of its own (one per line is a cost too): :meth:`ImapSession._command`
    bounds the whole command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_parentheses = 0

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        """Keep the line; count its parentheses (literals arrive as bytearray)."""
        super().append_to_resp(line, result)
        if type(line) is bytes:
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._open_parentheses = 0
            self._open_parentheses += line.count(b"(") - line.count(b")")

    def wait_data(self) -> bool:
        """Whether the current message's FETCH response continues on the next line."""
        return self._open_parentheses != 0


def _raise_if_cancelled() -> None:
    """Raise the cancellation that Python 3.11's ``wait_for`` may have swallowed.

    When a command's answer and a cancellation arrive together, ``wait_for`` returns
    the answer and the cancellation is lost; an IDLE begun after that would outlive
    the task that was told to stop, and block the LOGOUT behind it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _parse_fetch(
    lines: Sequence[bytes | bytearray], folder: FolderState, *, partial: bool = False
) -> Iterable[FetchedMail]:
    """FETCH responses with a literal: ``N FETCH (UID u FLAGS (...) BODY[] {n}``, data, ``)``.

    Servers order the items as they like (FLAGS may follow the literal), and may slip in
    unsolicited FETCH lines without a body, which are skipped.
    """
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if isinstance(line, bytearray) or not _FETCH_START.match(line) or not line.endswith(b"}"):
            continue
        if index >= len(lines) or not isinstance(lines[index], bytearray):
            continue
        raw = bytes(lines[index])
        trailer = lines[index + 1] if index + 1 < len(lines) else b""
        index += 2
        items = bytes(line) + b" " + bytes(trailer)
        uid = _UID.search(items)
        if uid is None:
            continue
        flags = _FLAGS.search(items)
        flag_names = tuple(flags.group(1).decode().split()) if flags else ()
        size = _SIZE.search(items)
        yield FetchedMail(
            folder.name,
            folder.uidvalidity,
            int(uid.group(1)),
            flag_names,
            raw,
            size=int(size.group(1)) if size else len(raw),
            partial=partial,
        )


def _quote_search(value: str) -> str:
    """A search string as an IMAP quoted string; values with line breaks cannot be sent."""
    if any(char in value for char in "\r\n\0"):
        raise ValueError("an IMAP search value cannot hold a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _can_set_seen(select_lines: list[bytes]) -> bool:
    """Whether SELECT said the folder is writable and ``\\Seen`` can be stored."""
    for line in select_lines:
        if b"[READ-ONLY]" in line:
            return False
        if (match := _PERMANENT_FLAGS.search(line)) and b"\\Seen" not in match.group(1):
            return False
    return True


def _server_text(response: aioimaplib.Response) -> str:
    for line in reversed(response.lines):
        if isinstance(line, bytes) and line.strip():
            return line.decode("utf-8", errors="replace").strip()
    return response.result


async def _connect(
    host: str, port: int, security: Security, ssl_context: ssl.SSLContext | None, timeout: float
) -> aioimaplib.IMAP4:
    if security == "tls":
        client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
            host, port, timeout=timeout, ssl_context=ssl_context or ssl.create_default_context()
        )
    elif security == "starttls":
        client = _StartTlsIMAP4(host, port, timeout=timeout, ssl_context=ssl_context)
    else:
        client = aioimaplib.IMAP4(host, port, timeout=timeout)
    try:
        await client.wait_hello_from_server()
    except ssl.SSLError as error:
        raise ChannelError(
            f"TLS handshake failed with IMAP {host}:{port} ({error.reason or error})",
            TLS_FAILED_HINT,
        ) from None
    except TimeoutError:
        raise ChannelError(
            f"cannot reach IMAP server {host}:{port}: no greeting within {timeout:g} s",
            _port_hint(security),
        ) from None
    except OSError as error:
        raise ChannelError(
            f"cannot reach IMAP server {host}:{port} ({error.strerror or error})",
            "check imap_host and imap_port, and that the server is running",
        ) from None
    except aioimaplib.AioImapException as error:
        raise ChannelError(f"IMAP server {host}:{port} refused the session: {error}") from None
    return client


def _port_hint(security: Security) -> str:
    if security == "tls":
        return "imap_use_tls = true needs an implicit-TLS port (usually 993)"
    return "check imap_host, imap_port and the TLS settings (993 is implicit TLS)"


class _StartTlsIMAP4(aioimaplib.IMAP4):
    """aioimaplib's client on a connection that was upgraded with STARTTLS first.

    aioimaplib has no STARTTLS. We speak the three lines of it ourselves (greeting,
    ``STARTTLS``, ``OK``), upgrade the socket, and hand the TLS transport to
    aioimaplib's protocol as if the server had just greeted it, which makes it ask for
    the capabilities again, as RFC 3501 requires after STARTTLS.
    """

    #: The stream the handshake ran on. Held for the connection's lifetime: a
    #: StreamWriter that is garbage-collected closes its transport, which aioimaplib
    #: now reads from.
    stream_writer: asyncio.StreamWriter | None = None

    def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = aioimaplib.IMAP4ClientProtocol(local_loop, conn_lost_cb)
        context = ssl_context or ssl.create_default_context()
        self._client_task = local_loop.create_task(self._starttls_handshake(host, port, context))

    async def _starttls_handshake(self, host: str, port: int, context: ssl.SSLContext) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self.stream_writer = writer
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            writer.close()
            raise aioimaplib.Error(f"unexpected greeting {greeting[:80]!r}")
        writer.write(b"S1 STARTTLS\r\n")
        line = await reader.readline()
        while line.startswith(b"*"):
            line = await reader.readline()
        if not line.startswith(b"S1 OK"):
            writer.close()
            refusal = line.decode(errors="replace").strip()
            raise ssl.SSLError(f"the server refused STARTTLS: {refusal}")
        await writer.start_tls(context, server_hostname=host)
        transport = writer.transport
        transport.set_protocol(self.protocol)
        self.protocol.connection_made(transport)
        self.protocol.data_received(b"* OK TLS is active\r\n")
