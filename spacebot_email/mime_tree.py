"""The stdlib's message tree for well-formed MIME, built without its line-by-line parser.

``email.feedparser`` reads a mail one line at a time, tests every line against every
open boundary, and compiles a regular expression for each boundary it meets: a new
one for every multipart mail, as boundaries are unique (0.26 ms, twice what parsing
a whole plain mail costs). For mail as most senders write it (header blocks ended by
an empty line, boundaries where they belong, CRLF or LF line ends), the tree the
stdlib builds follows from two things only: where each header block ends and where
the boundary lines are, which ``str.find`` locates in C.

:func:`build_tree` builds exactly that tree: the same message objects (through the
policy's ``message_factory``), headers split by the policy's own
``header_source_parse``, and the same payloads, preambles and epilogues, line ends
included, attached messages (``message/rfc822``) parsed as mails of their own.
Wherever the stdlib would take a path of its own (any defect it would record, a
``message/delivery-status`` part, a digest, a bare CR, an envelope ``From`` line),
it returns None and the caller runs the stdlib parser. tests/test_mime_tree.py checks
that the two trees are equal for every mail of the corpus and for generated ones.
"""

from __future__ import annotations

import itertools
import re
import typing
from email.message import Message
from email.policy import Compat32

__all__ = ["build_tree"]

#: A header field: a line that ``email.feedparser.headerRE`` takes for a header (less
#: the cases the stdlib handles apart: an empty name, the envelope ``From `` line) and
#: the continuation lines after it.
_HEADER_FIELD = re.compile(r"[\041-\071\073-\176]+:.*(?:\n|\Z)(?:[\t ].*(?:\n|\Z))*")
#: Multipart nesting deeper than this goes to the stdlib parser (which has its own
#: limits and the caller's guard against them).
_MAX_DEPTH = 32
#: The transfer encodings a multipart may declare (RFC 2045 section 6.4).
_MULTIPART_ENCODINGS = ("7bit", "8bit", "binary")


class _BoundaryLine(typing.NamedTuple):
    """A boundary line: where it starts, where the next line starts, whether it closes."""

    start: int
    end: int
    closing: bool


class _Irregular(Exception):
    """The mail takes a path of the stdlib parser's that this module does not follow."""


def build_tree(text: str, policy: Compat32) -> Message | None:
    """The tree ``email.parser.Parser(policy=policy).parsestr(text)`` gives, or None.

    :param text: a whole mail, as ``BytesParser`` hands it on: bytes decoded as ASCII
        with ``surrogateescape``.
    :param policy: a compat32 policy; its ``message_factory`` makes the messages.
    :return: the root message, or None when the mail is not of the regular kind this
        module builds (the stdlib parser then gives the tree, defects and all).
    """
    if text.count("\r") != text.count("\r\n"):
        return None  # a bare CR, which the stdlib takes for a line end
    try:
        return _entity(text, 0, len(text), policy, 0)[0]
    except _Irregular:
        return None


def _entity(text: str, start: int, end: int, policy: Compat32, depth: int) -> tuple[Message, str]:
    """One message or body part, ``text[start:end]``, with everything below it.

    :return: the message, and its content type.
    """
    if depth > _MAX_DEPTH:
        raise _Irregular
    factory = policy.message_factory or Message
    msg = factory(policy=policy)
    body_start = _read_headers(msg, text, start, end, policy)
    content_type = msg.get_content_type()
    if content_type.startswith("multipart/"):
        _read_multipart(msg, content_type, text, body_start, end, policy, depth)
    elif content_type.startswith("message/"):
        if content_type == "message/delivery-status":
            raise _Irregular  # blocks of headers, which the stdlib reads apart
        msg.attach(_entity(text, body_start, end, policy, depth + 1)[0])
    else:
        msg.set_payload(text[body_start:end])
    return msg, content_type


def _read_headers(msg: Message, text: str, start: int, end: int, policy: Compat32) -> int:
    """Store the header block that starts at ``start`` in ``msg``; where the body starts.

    The block ends at an empty line (which belongs to neither) or at ``end``.
    """
    position = start
    while field := _HEADER_FIELD.match(text, position, end):
        # One field, continuation lines and all, splits as its lines would.
        msg.set_raw(*policy.header_source_parse([field[0]]))
        position = field.end()
    if position == end:
        return position
    for empty_line in ("\n", "\r\n"):
        if text.startswith(empty_line, position, end):
            return position + len(empty_line)
    # An envelope line, a continuation with no header before it, or a line of body
    # text where a header belongs.
    raise _Irregular


def _read_multipart(
    msg: Message,
    content_type: str,
    text: str,
    start: int,
    end: int,
    policy: Compat32,
    depth: int,
) -> None:
    """The preamble, parts and epilogue of a multipart body, ``text[start:end]``."""
    boundary = msg.get_boundary()
    if boundary is None or content_type == "multipart/digest":
        raise _Irregular  # no boundary; or parts that default to message/rfc822
    encoding = str(msg.get("content-transfer-encoding", "8bit")).lower()
    if encoding not in _MULTIPART_ENCODINGS:
        raise _Irregular
    lines = _boundary_lines(text, start, end, "--" + boundary)
    if not lines or lines[0].closing or not lines[-1].closing:
        raise _Irregular  # no opening boundary, or no closing one
    first_start = lines[0].start
    if first_start > start:
        # RFC 2046: the line end before a boundary belongs to the boundary, here and
        # for each part below.
        msg.preamble = _without_line_end(text[start:first_start])
    for before, after in itertools.pairwise(lines):
        part_start, part_end = before.end, after.start
        if part_start == part_end:
            raise _Irregular  # two boundary lines in a row: the stdlib skips the second
        part, part_type = _entity(text, part_start, part_end, policy, depth + 1)
        msg.attach(part)
        _drop_line_end_before_boundary(part, part_type)
    msg.epilogue = text[lines[-1].end : end]


def _drop_line_end_before_boundary(part: Message, content_type: str) -> None:
    """Take the line end before the next boundary off the part, where the stdlib does.

    It takes it off the last message it built: the part, or for an attached message
    the message inside (and so on down); off the epilogue of a multipart (an empty
    epilogue becomes None), else off the payload.
    """
    while content_type.startswith("message/"):
        part = part._payload[0]
        content_type = part.get_content_type()
    if content_type.startswith("multipart/"):
        part.epilogue = _without_line_end(part.epilogue) if part.epilogue else None
    else:
        part.set_payload(_without_line_end(part._payload))


def _boundary_lines(text: str, start: int, end: int, separator: str) -> list[tuple[int, int, bool]]:
    """Each boundary line of ``text[start:end]`` up to the closing one, in order.

    :return: (where the line starts, where the next line starts, whether it closes).
    """
    found: list[tuple[int, int, bool]] = []
    if text.startswith(separator, start, end):
        candidate = start
    else:
        candidate = _line_starting_with(text, separator, start, end)
    while candidate >= 0:
        newline = text.find("\n", candidate, end)
        line_end = end if newline < 0 else newline + 1
        closing = _boundary_kind(text[candidate + len(separator) : line_end])
        if closing is not None:
            found.append(_BoundaryLine(candidate, line_end, closing))
            if closing:
                break
        candidate = _line_starting_with(text, separator, line_end - 1, end)
    return found


def _line_starting_with(text: str, prefix: str, start: int, end: int) -> int:
    """Where the first line after ``text[start]`` that starts with ``prefix`` starts, or -1."""
    newline = text.find("\n" + prefix, start, end)
    return newline + 1 if newline >= 0 else -1


def _boundary_kind(rest: str) -> bool | None:
    """What the rest of a line after ``--boundary`` makes it, as the stdlib's pattern
    ``(--)?[ \\t]*(\\r\\n|\\r|\\n)?$`` reads it.

    :return: True for the closing boundary, False for one between parts, None when
        the line is not a boundary line at all.
    """
    closing = rest.startswith("--")
    if closing:
        rest = rest[2:]
    if rest.lstrip(" \t") not in ("", "\n", "\r\n"):
        return None
    return closing


def _without_line_end(value: str) -> str:
    """``value`` less one line end (CRLF or LF) at its end."""
    for line_end in ("\r\n", "\n"):
        if value.endswith(line_end):
            return value[: -len(line_end)]
    return value
