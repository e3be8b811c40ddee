"""The values that travel between channels, the runtime and agents.

They mirror Spacebot's own model, so that a guide that speaks of
``MessageContent::Media`` or ``OutboundResponse::File`` reads true here as
``MessageContent.Media`` and ``OutboundResponse.File``. Every class is frozen; every
variant of a union names itself in a ``type_tag`` class variable, which the one
converter in :mod:`spacebot_core.convert` writes as the ``type`` field of its JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import attrs

from spacebot_core.errors import SearchError


@attrs.frozen
class Attachment:
    """A file that came with an inbound message.

    ``data`` holds the bytes; it is ``None`` when the file was not loaded, in which
    case ``rejected_reason`` says why (for example, that it was over a size limit).
    """

    filename: str
    mime_type: str
    size: int
    data: bytes | None = attrs.field(default=None, repr=False)
    rejected_reason: str | None = None


class MessageContent:
    """Namespace for what an inbound message says: ``Text`` or ``Media``."""

    @attrs.frozen
    class Text:
        """Plain text, and nothing else."""

        type_tag: ClassVar[str] = "text"
        text: str

    @attrs.frozen
    class Media:
        """Text (possibly empty) with attachments."""

        type_tag: ClassVar[str] = "media"
        text: str
        attachments: tuple[Attachment, ...] = ()


AnyContent = MessageContent.Text | MessageContent.Media


@attrs.frozen
class InboundMessage:
    """One message received on a channel, normalized for the runtime and agents.

    ``adapter`` is the runtime_key of the instance it came from (``email``,
    ``sales-email``); ``source`` is the channel type (``email``). ``metadata`` holds
    channel-specific JSON-safe values (for email: from, subject, folder, uid, ...).
    """

    id: str
    source: str
    adapter: str
    conversation_id: str
    sender_id: str
    content: AnyContent
    timestamp: datetime
    metadata: dict[str, Any] = attrs.field(factory=dict)
    formatted_author: str | None = None

    @property
    def text(self) -> str:
        """The message's text, whichever kind of content it is."""
        return self.content.text


class OutboundResponse:
    """Namespace for everything an agent can answer with."""

    @attrs.frozen
    class Text:
        """A plain text reply."""

        type_tag: ClassVar[str] = "text"
        text: str

    @attrs.frozen
    class ThreadReply:
        """A reply in a named thread; channels without named threads send the text."""

        type_tag: ClassVar[str] = "thread_reply"
        thread_name: str
        text: str

    @attrs.frozen
    class File:
        """A file to send, with an optional caption."""

        type_tag: ClassVar[str] = "file"
        filename: str
        data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
        mime_type: str = "application/octet-stream"
        caption: str | None = None

    @attrs.frozen
    class Reaction:
        """An emoji reaction to the message being answered."""

        type_tag: ClassVar[str] = "reaction"
        emoji: str

    @attrs.frozen
    class RemoveReaction:
        """Take back an earlier reaction."""

        type_tag: ClassVar[str] = "remove_reaction"
        emoji: str

    @attrs.frozen
    class Ephemeral:
        """A message meant only for one user; channels without that send the text."""

        type_tag: ClassVar[str] = "ephemeral"
        text: str
        user_id: str | None = None

    @attrs.frozen
    class RichMessage:
        """Text with channel-specific blocks; channels without blocks send the text."""

        type_tag: ClassVar[str] = "rich_message"
        text: str
        blocks: tuple[dict[str, Any], ...] = ()

    @attrs.frozen
    class ScheduledMessage:
        """Text to be posted at a given time; channels without scheduling send it now."""

        type_tag: ClassVar[str] = "scheduled_message"
        text: str
        post_at: datetime

    @attrs.frozen
    class StreamStart:
        """The start of a streamed reply."""

        type_tag: ClassVar[str] = "stream_start"

    @attrs.frozen
    class StreamChunk:
        """One piece of a streamed reply."""

        type_tag: ClassVar[str] = "stream_chunk"
        text: str

    @attrs.frozen
    class StreamEnd:
        """The end of a streamed reply."""

        type_tag: ClassVar[str] = "stream_end"

    @attrs.frozen
    class Status:
        """A status indicator such as ``typing`` or ``thinking``."""

        type_tag: ClassVar[str] = "status"
        status: str


AnyResponse = (
    OutboundResponse.Text
    | OutboundResponse.ThreadReply
    | OutboundResponse.File
    | OutboundResponse.Reaction
    | OutboundResponse.RemoveReaction
    | OutboundResponse.Ephemeral
    | OutboundResponse.RichMessage
    | OutboundResponse.ScheduledMessage
    | OutboundResponse.StreamStart
    | OutboundResponse.StreamChunk
    | OutboundResponse.StreamEnd
    | OutboundResponse.Status
)

#: The responses that carry text a person should read, whatever the channel.
TEXT_RESPONSES = (
    OutboundResponse.Text,
    OutboundResponse.ThreadReply,
    OutboundResponse.Ephemeral,
    OutboundResponse.RichMessage,
    OutboundResponse.ScheduledMessage,
)


@attrs.frozen
class HistoryEntry:
    """One earlier message of a conversation, as an agent sees it.

    ``role`` is ``user`` for what the other side wrote and ``assistant`` for what the
    bot answered. ``message_id``, when known, says which message it was: the inbound
    message's id for a ``user`` entry the store kept, the reply's delivery id for an
    ``assistant`` entry the store kept, and the channel's own id (for email, the
    Message-ID) for an entry a channel found itself (``spacebot_thread_history``).
    """

    role: str
    text: str
    timestamp: datetime
    sender_id: str | None = None
    message_id: str | None = None


#: The most hits one search returns.
MAX_SEARCH_LIMIT = 50
#: The most days back a search may reach (``since_days``).
MAX_SEARCH_DAYS = 36500
#: The most characters of one text criterion (text, sender, subject).
MAX_SEARCH_VALUE_CHARS = 1000
#: The most characters of a found message's text a hit carries.
SEARCH_TEXT_CHARS = 300


@attrs.frozen
class SearchQuery:
    """What an agent looks for in an instance's messages (the ``search_mailbox`` tool).

    Every criterion given must match; none given matches every message. ``text`` is
    looked for anywhere in a message, ``sender`` in its From, ``subject`` in its
    Subject, each as a substring the server compares without regard to case.
    ``unread_only`` keeps messages not yet read; ``since_days`` keeps those received
    in the last N days (0: today). ``folders`` empty means the instance's configured
    folders. ``limit`` (1 to :data:`MAX_SEARCH_LIMIT`) is the most hits returned,
    newest first.

    :raises SearchError: a value out of range, with what is allowed.
    """

    text: str | None = None
    sender: str | None = None
    subject: str | None = None
    unread_only: bool = False
    since_days: int | None = None
    folders: tuple[str, ...] = ()
    limit: int = 10

    def __attrs_post_init__(self) -> None:
        if not _is_int(self.limit) or not 1 <= self.limit <= MAX_SEARCH_LIMIT:
            raise SearchError(
                f"limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}, not {self.limit!r}"
            )
        if self.since_days is not None and (
            not _is_int(self.since_days) or not 0 <= self.since_days <= MAX_SEARCH_DAYS
        ):
            raise SearchError(
                f"since_days must be a whole number from 0 to {MAX_SEARCH_DAYS}, "
                f"not {self.since_days!r}"
            )
        for name in ("text", "sender", "subject"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or "\0" in value):
                raise SearchError(f"{name} must be text without NUL characters")
            if value is not None and len(value) > MAX_SEARCH_VALUE_CHARS:
                raise SearchError(f"{name} must be at most {MAX_SEARCH_VALUE_CHARS} characters")
        for folder in self.folders:
            if not isinstance(folder, str) or not folder or "\0" in folder:
                raise SearchError(f"folder names must be non-empty text, not {folder!r}")


def _is_int(value: object) -> bool:
    """Whether ``value`` is an int and not a bool (``True`` is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


@attrs.frozen
class SearchHit:
    """One message a search found, as an agent reads it.

    ``sender`` is the From (``Name <address>``, or the address); ``date`` the message's
    own date, or None when it has none; ``unread`` whether it was not yet read.
    ``text`` is the start of what the sender wrote (for email, the new text without
    quoted history or signature), whitespace collapsed, at most
    :data:`SEARCH_TEXT_CHARS` characters.
    """

    folder: str
    uid: int
    message_id: str
    sender: str
    subject: str
    date: datetime | None
    unread: bool
    text: str
