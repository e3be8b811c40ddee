"""Build the mails the bot sends: replies that thread, and fresh messages.

Pure functions, no I/O. Every header value that comes from outside (a subject, a
display name, a Message-ID, a filename, the agent's text) passes through one of the
cleaners below before it reaches a header, because the stdlib (3.11) does not protect
us: it decodes RFC 2047 encoded words in any value it is given, so a subject such as
``=?utf-8?q?a=0D=0ABcc:_x@y?=`` becomes a real ``Bcc:`` line when the message is
written out. The cleaners settle each value until a reader sees what we meant: the
header is folded as we send it, parsed back as a mail program would, and must come back
as one header, with no control character and the same text. :func:`_check_headers`
then checks the folded form of every header before the message leaves this module.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email import policy as policies
from email.errors import MessageError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.parser import BytesHeaderParser

from spacebot_core.errors import ChannelError
from spacebot_core.types import OutboundResponse
from spacebot_email.threads import TOKEN_LENGTH, conversation_token, reply_subject

logger = logging.getLogger(__name__)

#: A file to attach. The agent's ``OutboundResponse.File`` is used as it is.
OutgoingFile = OutboundResponse.File

#: References keeps the thread's root and this many of the latest ids (RFC 5322
#: 3.6.4 allows trimming; MUAs keep the first and the last ones, as we do).
REFERENCES_TAIL = 20

#: Longer ids are not real Message-IDs; they could also not be folded under the
#: 998-octet line limit.
MAX_MESSAGE_ID_LENGTH = 250

#: RFC 5322 2.1.1: no line of a message may be longer than this, CRLF excluded.
MAX_LINE_OCTETS = 998

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_MSG_ID = re.compile(rf"<[{_ATEXT}.]+@(?:[{_ATEXT}.]+|\[[\x21-\x5a\x5e-\x7e]*\])>")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_RUN = re.compile(rf"\s*[{_CONTROL}][\s{_CONTROL}]*")
_CONTROL_CHAR = re.compile(f"[{_CONTROL}]")
_WHITESPACE = re.compile(r"\s+")
_ADDR_FORBIDDEN = re.compile(rf'[\s<>()",;:\\\[\]{_CONTROL}]')
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+\-]*/[a-z0-9][a-z0-9!#$&^_.+\-]*")
#: Values that a reader reads back as written, so need no round trip (see _settle):
#: printable ASCII without an encoded word in an unstructured header (Subject), and
#: letters, digits, spaces and ``.'_-`` in a display name or a filename.
_PLAIN_UNSTRUCTURED = re.compile(r"(?:[\x20-\x3c\x3e-\x7e]|=(?!\?))+")
_PLAIN_WORDS = re.compile(r"[A-Za-z0-9 .'_-]+")
#: Rounds of encoded-word decoding we follow before calling a value hostile.
_SETTLE_ROUNDS = 8
_FALLBACK_DOMAIN = "spacebot.invalid"


class _HeaderClasses(HeaderRegistry):
    """The stdlib's header registry, each header class made once, not once a header.

    ``HeaderRegistry`` makes a new class (``type(...)``) every time it is asked for
    one: that was a fifth of the cost of composing a reply. The class depends only on
    the header's name, and the registry here is never changed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        """The class for headers called ``name``, made on first use."""
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


_HEADER_CLASSES = _HeaderClasses()
#: The stdlib's policies, sharing the header classes: SMTP and SMTPUTF8 write what we
#: send, and _READER reads it back as a mail program would.
SMTP = policies.SMTP.clone(header_factory=_HEADER_CLASSES)
SMTPUTF8 = policies.SMTPUTF8.clone(header_factory=_HEADER_CLASSES)
_READER = policies.default.clone(header_factory=_HEADER_CLASSES)


def compose_reply(
    *,
    from_address: str,
    from_name: str | None,
    to: str,
    original_subject: str,
    original_message_id: str,
    original_references: Sequence[str],
    text: str,
    message_id: str,
    attachments: Sequence[OutgoingFile] = (),
    to_name: str | None = None,
    date: datetime | None = None,
    x_loop: str | None = None,
) -> EmailMessage:
    """Build the reply to one inbound mail, threaded under it.

    :param from_address: the bot's address (``from_address`` in the config).
    :param from_name: the bot's display name, or ``None``.
    :param to: the Reply-To address of the inbound mail, else its From address.
    :param original_subject: the inbound subject, decoded; it gets exactly one ``Re:``
        (:func:`spacebot_email.threads.reply_subject`).
    :param original_message_id: the inbound Message-ID, bracketed; becomes In-Reply-To.
    :param original_references: the inbound References ids, oldest first.
    :param text: the agent's answer, the text/plain body.
    :param message_id: this reply's Message-ID, see :func:`reply_message_id`.
    :param attachments: files to attach (makes the mail multipart/mixed).
    :param to_name: the recipient's display name, or ``None``.
    :param date: the Date header; now (UTC) when ``None``.
    :param x_loop: the X-Loop value; ``from_address`` when ``None``.
    :return: the message, with policy SMTP (CRLF, folded headers).
    :raises ChannelError: an address is not a plain address, or a header would be unsafe.
    """
    parent = original_message_id.strip()
    references = reply_references(original_references, parent)
    message = _start_message(
        from_address=from_address,
        from_name=from_name,
        to=to,
        to_name=to_name,
        subject=reply_subject(original_subject),
        message_id=message_id,
        date=date,
    )
    if is_message_id(parent):
        _set_header(message, "In-Reply-To", parent)
    if references:
        _set_header(message, "References", " ".join(references))
    _finish_message(
        message,
        auto_submitted="auto-replied",
        x_loop=x_loop or from_address,
        text=text,
        attachments=attachments,
    )
    return message


def check_reply(*, to: str, to_name: str | None, original_subject: str) -> None:
    """Refuse, as :func:`compose_reply` would, a reply whose inbound values are unusable.

    What can make a reply impossible comes from the mail being answered: its reply
    address and its subject. Checking them costs what composing costs, and the checked
    values are remembered, so the reply composed later reuses the work.

    :raises ChannelError: the address is not a plain address, or the subject would be
        unsafe in a header.
    """
    _mailbox(to, to_name, "recipient")
    _settled_subject(reply_subject(original_subject))


def compose_message(
    *,
    from_address: str,
    from_name: str | None,
    to: str,
    subject: str | None,
    text: str,
    message_id: str,
    attachments: Sequence[OutgoingFile] = (),
    to_name: str | None = None,
    date: datetime | None = None,
    x_loop: str | None = None,
) -> EmailMessage:
    """Build a fresh mail that answers nothing (``spacebot send email:addr``).

    The headers follow :func:`compose_reply` without In-Reply-To and References.
    ``Auto-Submitted`` is ``auto-generated`` (RFC 3834: sent by a program, not in
    answer to a mail), so that other bots and vacation responders leave it alone.

    :param subject: the subject; ``Message from <from_name>`` when empty or ``None``.
    :param message_id: this mail's Message-ID, see :func:`new_message_id`.
    :return: the message, with policy SMTP (CRLF, folded headers).
    :raises ChannelError: an address is not a plain address, or a header would be unsafe.
    """
    default = f"Message from {_one_line(from_name or '') or from_address}"
    message = _start_message(
        from_address=from_address,
        from_name=from_name,
        to=to,
        to_name=to_name,
        subject=_one_line(subject or "") or default,
        message_id=message_id,
        date=date,
    )
    _finish_message(
        message,
        auto_submitted="auto-generated",
        x_loop=x_loop or from_address,
        text=text,
        attachments=attachments,
    )
    return message


def reply_references(original_references: Sequence[str], original_message_id: str) -> list[str]:
    """The References of a reply: the inbound chain plus the inbound Message-ID.

    ``original_references`` is a list of ids (the raw header text is split). Ids that
    are not strict ``<left@right>`` msg-ids are dropped, duplicates keep
    their first place, the parent comes last, and a long chain keeps its first id (the
    thread's root, which threading keys on) and the last :data:`REFERENCES_TAIL`.
    """
    if isinstance(original_references, str):  # the raw header text, not a list
        original_references = original_references.split()
    parent = original_message_id.strip()
    chain: list[str] = []
    for candidate in (ref.strip() for ref in original_references):
        if candidate in chain or candidate == parent:
            continue
        if is_message_id(candidate):
            chain.append(candidate)
        else:
            logger.debug("dropped malformed id %r from References", candidate)
    if is_message_id(parent):
        chain.append(parent)
    if len(chain) > REFERENCES_TAIL + 1:
        chain = [chain[0], *chain[-REFERENCES_TAIL:]]
    return chain


@functools.lru_cache(maxsize=4096)
def is_message_id(value: str) -> bool:
    """Whether ``value`` is a strict msg-id: ``<left@right>``, no space or control.

    The stdlib must also read it back unchanged, which rules out ids holding an
    encoded word (the stdlib would decode it, possibly into a line break). A long id
    is folded onto its own line on the wire, so the read-back may start with the
    folding's white space.
    """
    if len(value) > MAX_MESSAGE_ID_LENGTH or _MSG_ID.fullmatch(value) is None:
        return False
    if "=?" not in value:
        return True  # ASCII without an encoded word: nothing for a reader to decode
    read_back = _read_unstructured(value)
    return read_back is not None and read_back.strip() == value


def reply_message_id(delivery_id: str, from_address: str, conversation: str | None = None) -> str:
    """The Message-ID of the reply to one delivery, the same on every attempt.

    A send repeated after a crash carries the same id, so the outbox, the recipient's
    mailbox and the Sent folder can all recognise it as the same mail. With
    ``conversation``, the id carries the conversation's token, so that an answer
    naming only this id in In-Reply-To finds its conversation again
    (:func:`spacebot_email.threads.own_reply_token`).
    """
    digest = hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    token = conversation_token(conversation) if conversation else None
    if token and len(token) == TOKEN_LENGTH and all(c in "0123456789abcdef" for c in token):
        return f"<{digest}.{token}.sb@{_id_domain(from_address)}>"
    return f"<{digest}@{_id_domain(from_address)}>"


def new_message_id(from_address: str) -> str:
    """A random Message-ID in the domain of ``from_address``, for a fresh mail."""
    return f"<{uuid.uuid4().hex}@{_id_domain(from_address)}>"


def _start_message(
    *,
    from_address: str,
    from_name: str | None,
    to: str,
    to_name: str | None,
    subject: str,
    message_id: str,
    date: datetime | None,
) -> EmailMessage:
    """A message with the headers every mail we send has, up to Message-ID."""
    if not is_message_id(message_id):
        raise ChannelError(
            f"refusing to send with Message-ID {message_id!r}",
            "this is a bug in the caller: build ids with reply_message_id/new_message_id",
        )
    message = EmailMessage(policy=SMTP)
    _set_header(message, "From", _mailbox(from_address, from_name, "from_address"))
    _set_header(message, "To", _mailbox(to, to_name, "recipient"))
    _set_header(message, "Subject", _settled_subject(subject))
    _set_header(message, "Date", _utc(date))
    _set_header(message, "Message-ID", message_id)
    return message


def _finish_message(
    message: EmailMessage,
    *,
    auto_submitted: str,
    x_loop: str,
    text: str,
    attachments: Sequence[OutgoingFile],
) -> None:
    """Add the loop-protection headers, the body and the files; check every header."""
    _set_header(message, "MIME-Version", "1.0")
    _set_header(message, "Auto-Submitted", auto_submitted)
    _set_header(message, "X-Loop", _addr_spec(x_loop, "x_loop"))
    message.set_content(_body_text(text), charset="utf-8")
    for attachment in attachments:
        _attach(message, attachment)
    _check_headers(message)


def _attach(message: EmailMessage, attachment: OutgoingFile) -> None:
    """Add one file; its name is made safe and RFC 2231-encoded by the stdlib."""
    maintype, subtype = _mime_type(attachment.mime_type).split("/", 1)
    # A MIMEPart, not add_attachment(): that builds an EmailMessage, whose
    # set_content() gives each attachment a stray MIME-Version header.
    part = MIMEPart(policy=SMTP)
    part.set_content(
        bytes(attachment.data),
        maintype=maintype,
        subtype=subtype,
        disposition="attachment",
        filename=_settle(_base_name(attachment.filename), _read_filename, _PLAIN_WORDS)
        or "attachment",
    )
    if not message.is_multipart():
        message.make_mixed()
    message.attach(part)


@functools.lru_cache(maxsize=1024)
def _mailbox(address: str, name: str | None, role: str) -> Address:
    """An Address whose display name and address read back exactly as given.

    Remembered (it is pure, and an Address is immutable): the bot's own From is the
    same on every reply, and a reply checked by :func:`check_reply` is composed soon after.
    """
    addr = _addr_spec(address, role)
    if _read_mailbox("", addr) != ("", addr):
        raise _bad_address(address, role)
    display = _settle(name or "", lambda value: _read_display_name(value, addr), _PLAIN_WORDS)
    return Address(display_name=display, addr_spec=addr)


def _addr_spec(address: str, role: str) -> str:
    """``address`` if it is a plain ``local@domain`` with nothing that could break out."""
    addr = address.strip()
    local, _, domain = addr.rpartition("@")
    # "=?" would let the stdlib decode an encoded word hidden in the address.
    if not local or not domain or "@" in local or "=?" in addr or _ADDR_FORBIDDEN.search(addr):
        raise _bad_address(address, role)
    return addr


def _bad_address(address: str, role: str) -> ChannelError:
    """The error for an address we will not put in a header."""
    if role == "recipient":
        hint = "the mail being answered has no usable From or Reply-To address"
    else:
        hint = f"set {role} to a plain address such as bot@example.com"
    return ChannelError(f"{role} {address!r} is not a plain email address", hint)


def _on_the_wire(name: str, value: object) -> EmailMessage | None:
    """The header ``name: value`` folded as we send it, then parsed as a reader would.

    ``None`` when it does not come back as exactly one header. Only this round trip
    tells the truth: the stdlib decodes encoded words while parsing what we give it
    (even inside quoted display names) and writes out what it decoded.
    """
    header = SMTP.header_store_parse(name, value)[1]
    raw = SMTP.fold_binary(name, header) + b"\r\n"
    parsed = BytesHeaderParser(policy=_READER).parsebytes(raw)
    return parsed if len(parsed.keys()) == 1 else None


def _read_mailbox(display: str, addr: str) -> tuple[str, str] | None:
    """The (display name, address) a reader sees in a To header built from these."""
    try:
        parsed = _on_the_wire("To", Address(display_name=display, addr_spec=addr))
        addresses = parsed["To"].addresses if parsed is not None else ()
    except (ValueError, IndexError, MessageError):
        return None  # the parse found a line break or worse where we put none
    if len(addresses) != 1:
        return None
    return (addresses[0].display_name, addresses[0].addr_spec)


def _read_display_name(display: str, addr: str) -> str | None:
    """The display name a reader sees, or ``None`` if the address does not survive."""
    seen = _read_mailbox(display, addr)
    return seen[0] if seen is not None and seen[1] == addr else None


def _read_unstructured(value: str) -> str | None:
    """What a reader sees in an unstructured header (Subject, References) of ``value``."""
    parsed = _on_the_wire("Subject", value)
    return str(parsed["Subject"]) if parsed is not None else None


def _read_filename(value: str) -> str | None:
    """The attachment name a reader sees in the filename parameter we write."""
    part = MIMEPart(policy=SMTP)
    part.add_header("Content-Disposition", "attachment", filename=value)
    parsed = _on_the_wire("Content-Disposition", part["Content-Disposition"])
    return parsed.get_filename() if parsed is not None else None


@functools.lru_cache(maxsize=1024)
def _settled_subject(subject: str) -> str:
    """``subject`` settled for the Subject header (see :func:`_settle`); remembered."""
    return _settle(subject, _read_unstructured, _PLAIN_UNSTRUCTURED)


def _settle(value: str, read_back: Callable[[str], str | None], plain: re.Pattern[str]) -> str:
    """A one-line value that a reader sees as we wrote it (up to whitespace).

    Each round removes control characters and looks at what a reader would see; a
    value holding encoded words changes, and the next round goes on with what the
    reader saw, so a line break hidden in an encoded word surfaces and is removed.
    When a value does not survive at all, its encoded-word openers are made inert.
    A value that ``plain`` matches whole is read back as written, so it is not tried.
    """
    for _ in range(_SETTLE_ROUNDS):
        value = _one_line(value)
        if plain.fullmatch(value):
            return value
        seen = read_back(value)
        if seen is not None and _same_text(seen, value):
            return value
        if seen is None:
            if "=?" not in value:
                break
            seen = value.replace("=?", "= ?")
        value = seen
    raise ChannelError(
        f"refusing to put {value!r} in a header",
        "the value does not survive as one header line; it is likely crafted",
    )


def _same_text(seen: str, meant: str) -> bool:
    """Whether a reader saw what we meant: no control character, same visible text.

    Whitespace may differ: the stdlib's folder adds a space between some encoded
    words on every round trip, which is harmless but never reaches a fixed point.
    """
    if _CONTROL_CHAR.search(seen):
        return False
    return _WHITESPACE.sub("", seen) == _WHITESPACE.sub("", meant)


def _one_line(value: str) -> str:
    """``value`` with each run of control characters (CR, LF, NUL, TAB...) as one space."""
    # Lone surrogates (from surrogateescape decoding) cannot be encoded: make them "?".
    value = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL_RUN.sub(" ", value).strip()


def _set_header(message: EmailMessage | MIMEPart, name: str, value: object) -> None:
    """Set a header, replacing any earlier one of the same name."""
    del message[name]
    message[name] = value


def _check_headers(message: EmailMessage) -> None:
    """Refuse a message whose folded headers could add or split a header line.

    The last line of defence: every header of every part, folded as it will be sent
    (ASCII with encoded words, and raw UTF-8 for SMTPUTF8 servers), must be one
    ``Name:`` line plus indented continuation lines, none empty, none too long.
    """
    for part in message.walk():
        for name, value in part.items():
            # An ASCII value folds alike for both: the policies differ only in the
            # charset a non-ASCII piece is tried in (and the folded text's encoding).
            writers = (SMTP,) if str(value).isascii() else (SMTP, SMTPUTF8)
            for writer in writers:
                if not _is_one_header(name, writer.fold_binary(name, value)):
                    raise ChannelError(
                        f"refusing to send: the {name} header would not survive as one header",
                        "this is a bug; please report it with the mail being answered",
                    )


def _is_one_header(name: str, folded: bytes) -> bool:
    """Whether ``folded`` is exactly one header field called ``name``."""
    lines = folded.split(b"\r\n")
    if lines[-1] != b"" or not lines[0].lower().startswith(name.lower().encode() + b":"):
        return False
    for index, line in enumerate(lines[:-1]):
        if b"\r" in line or b"\n" in line or b"\0" in line or len(line) > MAX_LINE_OCTETS:
            return False
        if index and (line[:1] not in (b" ", b"\t") or not line.strip()):
            return False
    return True


def _body_text(text: str) -> str:
    """The body as text the stdlib can encode: no NUL, no lone surrogate, LF line ends."""
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\0", "")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _base_name(filename: str) -> str:
    """The last path component, so a name cannot point into a directory."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


def _mime_type(mime_type: str) -> str:
    """A single-part MIME type, or application/octet-stream.

    multipart/* and message/* would need a structure (or 7bit/8bit encoding) that an
    opaque file cannot promise.
    """
    value = mime_type.strip().lower()
    if not _MIME_TYPE.fullmatch(value) or value.startswith(("multipart/", "message/")):
        return "application/octet-stream"
    return value


def _id_domain(from_address: str) -> str:
    """The right-hand side for our Message-IDs: the sender's domain, in ASCII."""
    local, at, domain = from_address.strip().rpartition("@")
    domain = domain.rstrip(".")
    if not (local and at):
        return _FALLBACK_DOMAIN
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return _FALLBACK_DOMAIN
    return domain.lower() if _DOMAIN.fullmatch(domain) else _FALLBACK_DOMAIN


def _utc(date: datetime | None) -> datetime:
    """``date`` as an aware datetime (naive means UTC), now when ``None``."""
    if date is None:
        return datetime.now(UTC)
    return date if date.tzinfo is not None else date.replace(tzinfo=UTC)
