"""Reading IMAP responses: what SELECT, LIST, SEARCH and FETCH answered, as values.

Pure functions over the lines aioimaplib hands over, no I/O, so they can be tested
without a server; and :class:`FetchCommand`, aioimaplib's FETCH with a faster check
for where one message's response ends.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import aioimaplib
import attrs
from aioimaplib.aioimaplib import literal_data_re

from spacebot_email.folder_names import decode_folder_name

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


def announces_new_mail(line: bytes) -> bool:
    """Whether an untagged line announces new mail in the selected folder."""
    # Every untagged line is asked (each message's FETCH too): a substring test first.
    return (b"EXISTS" in line or b"RECENT" in line) and _NEW_MAIL.match(line) is not None


def parse_select(folder: str, lines: Sequence[bytes | bytearray]) -> FolderState:
    """The state of ``folder`` from the lines of a successful SELECT."""
    uidvalidity = 0
    exists = 0
    uidnext = 0
    for line in lines:
        if isinstance(line, bytes | bytearray):
            if match := _UIDVALIDITY.search(line):
                uidvalidity = int(match.group(1))
            if match := _UIDNEXT.search(line):
                uidnext = int(match.group(1))
            if line.endswith(b" EXISTS"):
                exists = int(line.split()[0])
    writable = _can_set_seen([bytes(line) for line in lines])
    return FolderState(folder, uidvalidity, exists, writable, uidnext)


def _can_set_seen(select_lines: list[bytes]) -> bool:
    """Whether SELECT said the folder is writable and ``\\Seen`` can be stored."""
    for line in select_lines:
        if b"[READ-ONLY]" in line:
            return False
        if (match := _PERMANENT_FLAGS.search(line)) and b"\\Seen" not in match.group(1):
            return False
    return True


def parse_list(lines: Sequence[bytes | bytearray]) -> list[tuple[str, frozenset[str]]]:
    """Each folder of a LIST response, its name decoded, with its attributes."""
    folders = []
    for line in lines:
        if isinstance(line, bytes | bytearray) and (match := _LIST_LINE.match(bytes(line))):
            name = decode_folder_name(match.group("name").decode().strip('"'))
            folders.append((name, frozenset(match.group("attrs").decode().split())))
    return folders


def parse_search(lines: Sequence[bytes | bytearray]) -> array[int]:
    """The UIDs of a ``UID SEARCH`` response, ascending, as an array of 4-byte numbers:
    a search finding 50,000 mails then holds 200 KB, where a list of ints holds 4 MB."""
    # aioimaplib hands over the untagged "* SEARCH 1 2 3" as b"1 2 3"; the last
    # line is the tagged completion text.
    uids = array("I")
    for line in lines[:-1]:
        if _SEARCH_LINE.match(line):
            uids.extend(int(number.group()) for number in _NUMBER.finditer(line))
    if any(uids[index] > uids[index + 1] for index in range(len(uids) - 1)):
        uids = array("I", sorted(uids))
    return uids


def parse_sizes(lines: Sequence[bytes | bytearray]) -> dict[int, int]:
    """Each UID's size from a ``UID FETCH (UID RFC822.SIZE)`` response."""
    sizes: dict[int, int] = {}
    for line in lines:
        if isinstance(line, bytes | bytearray):
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def parse_fetch(
    lines: Sequence[bytes | bytearray], folder: FolderState, *, partial: bool = False
) -> Iterable[FetchedMail]:
    """FETCH responses with a literal: ``N FETCH (UID u FLAGS (...) BODY[] {n}``, data, ``)``.

    Servers order the items as they like (FLAGS may follow the literal), and may slip in
    unsolicited FETCH lines without a body, which are skipped.
    """
    responses = _with_literals(lines)
    for line, literal in responses:
        if literal is None or not _FETCH_START.match(line):
            continue
        raw = literal if type(literal) is bytes else bytes(literal)
        trailer, _ = next(responses, (b"", None))
        items = line + b" " + trailer
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


def _with_literals(
    lines: Sequence[bytes | bytearray],
) -> Iterator[tuple[bytes | bytearray, bytes | bytearray | None]]:
    """Each line of a response with the literal it announces (``{n}`` at its end), which
    is the item after it (:class:`FetchCommand` keeps literals as ``bytes``, aioimaplib's
    commands as ``bytearray``), or None."""
    index = 0
    while index < len(lines):
        line = lines[index]
        literal = None
        if line.endswith(b"}") and index + 1 < len(lines) and literal_data_re.match(line):
            index += 1
            literal = lines[index]
        index += 1
        yield line, literal


def server_text(response: aioimaplib.Response) -> str:
    """The server's own words in a response (its last non-empty line), for messages."""
    for line in reversed(response.lines):
        if isinstance(line, bytes) and line.strip():
            return line.decode("utf-8", errors="replace").strip()
    return response.result


class FetchCommand(aioimaplib.aioimaplib.FetchCommand):
    """aioimaplib's FETCH command, with less work per line and per message.

    - aioimaplib asks after every line whether the last message's parentheses are
      closed, by joining and scanning every line since that message's start: with many
      lines that grows with their square. This keeps a running count instead.
    - aioimaplib gathers a literal (a message's bytes) in a growing ``bytearray``, which
      :func:`parse_fetch` then had to copy into ``bytes``. This keeps the pieces of the
      reads it arrives in and joins them once: a message is copied once after the read.
      The literal is kept as ``bytes``; it is the item after the line announcing it.
    - It has no inactivity timer of its own (resetting one per line is a cost too):
      :meth:`.imap.ImapSession._command` bounds the whole command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_parentheses = 0
        #: Bytes still to come of the literal being read, and what came of it so far.
        self._literal_missing = 0
        self._literal_pieces: list[bytes | memoryview] = []

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        """Keep the line; count its parentheses."""
        self._resp_result = result
        self._resp_lines.append(line)
        if self.FETCH_MESSAGE_DATA_RE.match(line):
            self._open_parentheses = 0
        self._open_parentheses += line.count(b"(") - line.count(b")")

    def begin_literal_data(self, expected_size: int, literal_data: bytes = b"") -> bytes:
        """Start reading a literal of ``expected_size`` bytes (an empty one is kept at once)."""
        self._literal_missing = expected_size
        self._literal_pieces = []
        return self.append_literal_data(literal_data)

    def append_literal_data(self, data: bytes | memoryview) -> bytes | memoryview:
        """Take what belongs to the literal from ``data``; return the rest."""
        piece = data[: self._literal_missing]
        self._literal_pieces.append(piece)
        self._literal_missing -= len(piece)
        if not self._literal_missing:
            self._resp_lines.append(b"".join(self._literal_pieces))
            self._literal_pieces = []
        return data[len(piece) :]

    def wait_literal_data(self) -> bool:
        """Whether a literal is still being read."""
        return self._literal_missing != 0

    def wait_data(self) -> bool:
        """Whether the current message's FETCH response continues on the next line."""
        return self._open_parentheses != 0

    def _reset_timer(self) -> None:
        """No inactivity timer to reset (see the class's documentation)."""
