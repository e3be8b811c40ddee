"""Searching an email instance's folders for an agent (the ``search_mailbox`` tool).

A :class:`~spacebot_core.types.SearchQuery` becomes one ``UID SEARCH`` per folder
(:func:`search_arguments`, pure): ``TEXT``, ``FROM``, ``SUBJECT``, ``UNSEEN`` and
``SINCE dd-Mon-yyyy``, always ``UNDELETED``. Every value the agent gave is sent as
data, never as syntax, so no value can add a criterion (``") OR ALL ("``) or a
command:

* printable ASCII goes in a quoted string, ``\\`` and ``"`` escaped;
* anything else (non-ASCII, a line break, a control character) goes in a literal,
  with ``CHARSET UTF-8`` before the criteria when a value is not ASCII. aioimaplib
  sends literals only for APPEND (SEARCH is one of its pipelined commands, whose
  ``+`` continuation requests it ignores), so the literal is non-synchronizing
  (``{n+}``, RFC 7888): the server must announce ``LITERAL+``, or ``LITERAL-``, which
  allows up to 4096 bytes (every value is at most 1000 characters, so 4000 bytes).
  Dovecot, Gmail, Outlook, Fastmail and Yahoo do. On a server with neither, a
  non-ASCII value goes in a quoted string as UTF-8 (most servers take it) and a line
  break or control character becomes a space.

The newest ``limit`` hits of each folder (highest UIDs) are fetched as their first
:data:`FETCH_BYTES` bytes only (headers and the start of the body, ``BODY.PEEK``: no
mail is marked read, and no large mail is downloaded), parsed with the channel's
parser, merged across folders by their Date, newest first, and cut to ``limit``.

**A connection of its own.** A search runs on a short-lived IMAP connection, not on
the instance's long-lived one. The runtime handles several messages at once while
the intake fetches the next batch in the background on that connection, and the
instance waits in IDLE on it between rounds, holding it for up to 25 minutes: an
agent's search would wait behind that, or (a slow ``TEXT`` search over a large
mailbox that reaches ``timeout_secs``) mark the shared connection lost and take the
intake down with it. Its own connection leaves the intake's selected folder, UIDs
and new-mail tracking untouched, and works the same from ``spacebot search`` in
another process. A search is a rare event (an agent's tool call), so the price, one
login per search, is small.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import aioimaplib
import attrs

from spacebot_core.errors import SearchError
from spacebot_core.tools import newest_first
from spacebot_core.types import SEARCH_TEXT_CHARS, SearchHit, SearchQuery
from spacebot_email.imap import FolderMissingError, ImapSession
from spacebot_email.imap_responses import FetchedMail, parse_search, server_text
from spacebot_email.parse import parse_mail

if TYPE_CHECKING:
    from spacebot_email.adapter import EmailAdapter

log = logging.getLogger(__name__)

#: How much of each found mail is fetched: room for long header blocks (Received,
#: DKIM, ARC) and the start of the body. A hit needs only its first lines.
FETCH_BYTES = 32 * 1024
#: How much body text the parser keeps for a hit; its text is cut much shorter.
BODY_BYTES = 8 * 1024
#: LITERAL- (RFC 7888) allows non-synchronizing literals up to this size.
LITERAL_MINUS_MAX = 4096
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: What may stand in a quoted string as it is: printable ASCII.
_QUOTABLE = re.compile(r"[\x20-\x7e]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@attrs.frozen
class Literal:
    """A value sent as an IMAP literal: its UTF-8 bytes, counted, then the bytes."""

    text: str

    def render(self) -> str:
        """``{n+}`` CRLF and the text: a non-synchronizing literal (RFC 7888)."""
        return f"{{{len(self.text.encode('utf-8'))}+}}\r\n{self.text}"


def search_arguments(query: SearchQuery, today: date, *, literals: bool = True) -> str:
    """The arguments of ``UID SEARCH`` for ``query``, as sent after ``UID SEARCH``; pure.

    :param today: the day ``since_days`` counts back from.
    :param literals: the server takes non-synchronizing literals (``LITERAL+`` or
        ``LITERAL-``); without, values that need one are quoted as well as can be.
    """
    values = (("TEXT", query.text), ("FROM", query.sender), ("SUBJECT", query.subject))
    parts: list[str] = []
    if any(value is not None and not value.isascii() for _, value in values):
        parts += ["CHARSET", "UTF-8"]
    parts.append("UNDELETED")
    for key, value in values:
        if value is not None:
            parts += [key, search_value(value, literals=literals)]
    if query.unread_only:
        parts.append("UNSEEN")
    if query.since_days is not None:
        parts += ["SINCE", imap_date(today - timedelta(days=query.since_days))]
    return " ".join(parts)


def search_value(value: str, *, literals: bool = True) -> str:
    """One value as a quoted string or, when it cannot be one, a literal; pure."""
    # A lone surrogate (JSON allows "\ud800") cannot be sent as UTF-8.
    value = value.encode("utf-8", "replace").decode("utf-8")
    if not _QUOTABLE.fullmatch(value):
        if literals:
            return Literal(value).render()
        value = _CONTROL.sub(" ", value)  # no line break may stand in a quoted string
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(day: date) -> str:
    """A date as IMAP writes it (``1-Feb-2024``), month names in English whatever the
    locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


class _SearchCommand(aioimaplib.Command):
    """``UID SEARCH`` whose arguments may hold non-synchronizing literals.

    aioimaplib refuses a line break in a command's arguments (rightly: it would start
    a new command); a literal's CRLF is part of the IMAP syntax, and the literal's
    bytes are counted, so the server reads them as data whatever they hold.
    """

    def __init__(self, tag: str, arguments: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__("SEARCH", tag, prefix="UID", loop=loop)
        self._line = f"{tag} UID SEARCH {arguments}"

    def __repr__(self) -> str:
        """The command as sent (aioimaplib sends ``str(command)`` and a CRLF)."""
        return self._line


async def search_mailbox(adapter: EmailAdapter, query: SearchQuery) -> list[SearchHit]:
    """The mail of ``adapter``'s account matching ``query``, newest first.

    :raises SearchError: a folder asked for does not exist, or the server refused
        the search.
    :raises ChannelError: the server cannot be reached or refuses the login.
    """
    settings = adapter.settings
    asked = bool(query.folders)
    folders = list(query.folders) if asked else list(settings.folders)
    session = await adapter.open_imap_session()
    try:
        literals = session.has_capability("LITERAL+") or session.has_capability("LITERAL-")
        arguments = search_arguments(query, datetime.now(UTC).date(), literals=literals)
        hits: list[SearchHit] = []
        for folder in folders:
            try:
                fetched = await _search_folder(session, folder, arguments, query.limit)
            except FolderMissingError:
                if asked:
                    raise SearchError(
                        f"folder {folder!r} does not exist on {settings.imap_host}"
                    ) from None
                adapter.log.warning(
                    "[%s] search: folder %r does not exist", adapter.runtime_key, folder
                )
                continue
            # Newest (highest UID) first: mail without a Date keeps that order below.
            fetched.sort(key=lambda mail: mail.uid, reverse=True)
            hits += [_hit(mail, strip_quoted=settings.strip_quoted) for mail in fetched]
    finally:
        await session.close()
    hits = newest_first(hits)[: query.limit]
    adapter.log.debug(
        "[%s] search in %d folder(s): %d hit(s)", adapter.runtime_key, len(folders), len(hits)
    )
    return hits


async def _search_folder(
    session: ImapSession, folder: str, arguments: str, limit: int
) -> list[FetchedMail]:
    """The newest ``limit`` matches in ``folder``, their first bytes fetched."""
    async with session.using(folder):
        protocol = session.client.protocol
        command = _SearchCommand(protocol.new_tag(), arguments, protocol.loop)
        response = await session.execute(f"UID SEARCH in {folder}", command)
        if response.result != "OK":
            refusal = server_text(response)
            raise SearchError(f"the server refused the search in {folder!r}: {refusal}")
        newest = list(parse_search(response.lines))[-limit:]
        return await session.fetch_partial(newest, FETCH_BYTES)


def _hit(mail: FetchedMail, *, strip_quoted: bool) -> SearchHit:
    """A fetched (start of a) mail as a hit."""
    parsed = parse_mail(
        mail.raw, max_body_bytes=BODY_BYTES, max_attachment_bytes=0, strip_quoted=strip_quoted
    )
    return SearchHit(
        folder=mail.folder,
        uid=mail.uid,
        message_id=parsed.message_id,
        sender=str(parsed.sender) if parsed.sender else "",
        subject=parsed.subject,
        date=parsed.date,
        unread="\\Seen" not in mail.flags,
        text=snippet(parsed.new_text),
    )


def snippet(text: str, limit: int = SEARCH_TEXT_CHARS) -> str:
    """``text`` with its whitespace collapsed, cut to ``limit`` characters; pure."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
