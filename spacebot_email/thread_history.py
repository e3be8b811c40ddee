"""The earlier mails of a thread that the bot never saw, read back from the mailbox.

A mail that answers a thread names the thread's earlier mails in References and
In-Reply-To. When the thread began before the bot ran, or went on in another of its
folders, the state store holds none of them; they are still in the account: in the
configured folders, or in the Sent folder when the account's owner answered. This
module finds them by Message-ID (``UID SEARCH HEADER Message-ID``, one search per
folder for all the ids), reads each as the agent would have read it (new text only
with ``strip_quoted``), and hands them on as history entries, oldest first: ``user``
for what others wrote, ``assistant`` for what the bot's own address sent.

It uses the instance's one IMAP session, never a connection of its own. Every
command that depends on the selected folder runs inside :meth:`ImapSession.using`,
which holds the session's lock, so the background fetch of :mod:`.intake` (which
selects its folder again in its own ``using`` block) never runs a command in a
folder selected here, and nothing here runs in its folder. Every command is bounded
by the session's ``timeout_secs``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import attrs

from spacebot_core.types import HistoryEntry, InboundMessage
from spacebot_email.compose import reply_message_id
from spacebot_email.filters import is_own_address
from spacebot_email.imap import FolderMissingError, ImapSession
from spacebot_email.imap_responses import FetchedMail
from spacebot_email.intake import parse_fetched, partial_bytes
from spacebot_email.normalize import to_inbound
from spacebot_email.settings import EmailSettings

log = logging.getLogger(__name__)

__all__ = [
    "SENT_NAMES",
    "ThreadHistory",
    "known_message_ids",
    "searchable_id",
    "sent_folder",
    "wanted_ids",
]

#: RFC 6154's attribute of the folder that holds the account's sent mail.
SENT_ATTRIBUTE = "\\Sent"
#: Where providers keep sent mail, for a server that marks no folder ``\Sent``.
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "[Gmail]/Sent Mail")
#: The longest Message-ID searched for (a header line holds at most 998 characters).
MAX_ID_CHARS = 998
#: How many copies of one mail a folder may hold before the rest are left unread.
COPIES_PER_ID = 2


def searchable_id(message_id: str) -> bool:
    """Whether a Message-ID may go into an IMAP search.

    Only ``<...>`` of printable ASCII without spaces, as RFC 5322 writes them, and at
    most :data:`MAX_ID_CHARS` long. A quote or backslash in it is escaped by the search
    (see :meth:`ImapSession.search_header_any`); a line break, NUL, 8-bit byte or
    other control character could not be sent safely, and such an id is not looked
    up at all.
    """
    return (
        2 < len(message_id) <= MAX_ID_CHARS
        and message_id.startswith("<")
        and message_id.endswith(">")
        and all("!" <= char <= "~" for char in message_id)
    )


def known_message_ids(
    known: Iterable[HistoryEntry], *, from_address: str, conversation_id: str
) -> set[str]:
    """The Message-IDs on the wire of the history entries the store already has.

    A ``user`` entry's id is the inbound mail's Message-ID; an ``assistant`` entry's
    is its reply's delivery id, from which the reply's Message-ID is derived exactly
    as :meth:`EmailAdapter.spacebot_send` derived it.
    """
    ids: set[str] = set()
    for entry in known:
        if entry.message_id is None:
            continue
        ids.add(entry.message_id)
        if entry.role == "assistant":
            ids.add(reply_message_id(entry.message_id, from_address, conversation_id))
    return ids


def wanted_ids(message: InboundMessage, known_ids: set[str], limit: int) -> list[str]:
    """The ids of the thread's earlier mails to look up, oldest first.

    References in their order, then In-Reply-To; without the ids already known, the
    message's own, and those that cannot be searched; the newest ``limit`` of them.
    """
    if limit <= 0:
        return []
    metadata = message.metadata
    named = [*(metadata.get("references") or []), metadata.get("in_reply_to")]
    ids = [
        candidate
        for candidate in dict.fromkeys(named)
        if isinstance(candidate, str)
        and candidate != message.id
        and candidate not in known_ids
        and searchable_id(candidate)
    ]
    return ids[-limit:]


def sent_folder(folders: Sequence[tuple[str, frozenset[str]]]) -> str | None:
    """The account's Sent folder from a LIST: the one marked ``\\Sent`` (RFC 6154),
    else the first of :data:`SENT_NAMES` that exists, else None."""
    selectable = []
    for name, attributes in folders:
        lowered = {attribute.lower() for attribute in attributes}
        if SENT_ATTRIBUTE.lower() in lowered:
            return name
        if "\\noselect" not in lowered:
            selectable.append(name)
    return next((name for name in SENT_NAMES if name in selectable), None)


@attrs.define(eq=False)
class ThreadHistory:
    """Looks up a thread's earlier mails over an instance's IMAP session.

    :param connect: returns the instance's logged-in session (opening it if needed).
    :param settings: the instance's settings (folders, limits, addresses).
    :param runtime_key: the instance, for log lines.
    """

    connect: Callable[[], Awaitable[ImapSession]]
    settings: EmailSettings
    runtime_key: str
    #: The Sent folder found for one session (looked up once per connection).
    _sent_session: ImapSession | None = attrs.field(default=None, init=False)
    _sent: str | None = attrs.field(default=None, init=False)
    _listing: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False, repr=False)

    async def earlier(
        self, message: InboundMessage, known: Sequence[HistoryEntry]
    ) -> list[HistoryEntry]:
        """The mails ``message`` names as its thread's earlier ones that ``known`` does
        not hold, read from the configured folders and the Sent folder, oldest first.

        :raises ChannelError: the connection broke or a command timed out.
        """
        settings = self.settings
        known_ids = known_message_ids(
            known, from_address=settings.from_address or "", conversation_id=message.conversation_id
        )
        wanted = wanted_ids(message, known_ids, settings.thread_history_max)
        if not wanted:
            return []
        session = await self.connect()
        remaining = dict.fromkeys(wanted)
        found: dict[str, HistoryEntry] = {}
        for folder in await self._folders(session):
            if not remaining:
                break
            for entry in await self._search_folder(session, folder, message, list(remaining)):
                if entry.message_id in remaining:
                    del remaining[entry.message_id]
                    found[entry.message_id] = entry
        entries = _without_known_texts([found[i] for i in wanted if i in found], known)
        log.debug(
            "[%s] %d of %d earlier mail(s) of %s found in the mailbox",
            self.runtime_key,
            len(entries),
            len(wanted),
            message.id,
        )
        # In the thread's order where Dates tie or are missing (sorted is stable).
        return sorted(entries, key=lambda entry: entry.timestamp)

    async def _folders(self, session: ImapSession) -> list[str]:
        """The configured folders, then the Sent folder when it is not one of them."""
        folders = list(self.settings.folders)
        sent = await self._sent_folder(session)
        if sent is not None and sent not in folders:
            folders.append(sent)
        return folders

    async def _sent_folder(self, session: ImapSession) -> str | None:
        """The session's Sent folder, asked of the server once per connection."""
        async with self._listing:
            if self._sent_session is not session:
                # The session's lock: LIST must not interleave with another task's commands.
                async with session.lock:
                    listing = await session.list_folders_with_attributes()
                self._sent, self._sent_session = sent_folder(listing), session
            return self._sent

    async def _search_folder(
        self, session: ImapSession, folder: str, message: InboundMessage, ids: list[str]
    ) -> list[HistoryEntry]:
        """The mails of ``folder`` that carry one of ``ids`` as their Message-ID."""
        limit = partial_bytes(self.settings.max_body_bytes)
        try:
            async with session.using(folder):
                uids = await session.search_header_any("Message-ID", ids)
                # Headers and the start of the body: all of the text the agent reads.
                fetched = await session.fetch_partial(
                    uids[-COPIES_PER_ID * len(ids) :].tolist(), limit
                )
        except FolderMissingError as error:
            if folder == self._sent:
                self._sent_session = None  # look again next time: it was renamed or removed
            log.warning(
                "[%s] earlier mails not searched in %s: %s", self.runtime_key, folder, error
            )
            return []
        wanted = set(ids)
        entries = (self._entry(mail, message) for mail in fetched)
        return [entry for entry in entries if entry.message_id in wanted]

    def _entry(self, fetched: FetchedMail, message: InboundMessage) -> HistoryEntry:
        """One fetched mail as the agent would have read it, as a history entry."""
        settings = self.settings
        mail = parse_fetched(
            fetched,
            max_body_bytes=settings.max_body_bytes,
            max_attachment_bytes=settings.max_attachment_bytes,
        )
        inbound = to_inbound(
            mail,
            runtime_key=self.runtime_key,
            folder=fetched.folder,
            uid=fetched.uid,
            # A mail without a Date is no later than the mail that answers it.
            received_at=message.timestamp,
            strip_quoted=settings.strip_quoted,
        )
        own = is_own_address(inbound.sender_id, settings.own_addresses)
        return HistoryEntry(
            role="assistant" if own else "user",
            text=inbound.text,
            timestamp=inbound.timestamp,
            sender_id=None if own else inbound.sender_id,
            message_id=inbound.id,
        )


def _without_known_texts(
    entries: list[HistoryEntry], known: Sequence[HistoryEntry]
) -> list[HistoryEntry]:
    """Leave out what the store holds without an id (entries older than schema 3):
    the same side saying the same text."""
    said = {(entry.role, entry.text.strip()) for entry in known if entry.message_id is None}
    if not said:
        return entries
    return [entry for entry in entries if (entry.role, entry.text.strip()) not in said]
