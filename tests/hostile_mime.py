"""Hostile mail for the security tests and the fuzz run: fixed specimens and generators.

The specimens are the issue's list (deep nesting, ten thousand headers, a 50 MB body,
a zip, path-traversal and NUL file names, broken encodings) plus the two mails found
to block a mailbox (a From that no reply can be addressed to, a subject that never
settles). The hypothesis strategy builds MIME trees whose every header value may carry
CR, LF, NUL, encoded words hiding them, or a thousand characters.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import base64
import email
import io
import json
import zipfile
from email import policy

from hypothesis import strategies as st

from spacebot_email import compose
from spacebot_email.adapter import EmailAdapter
from spacebot_email.imap_responses import FetchedMail
from spacebot_email.settings import EmailSettings, finalize


def _mail(sender: str, to: str, subject: str, headers: list[str], body: bytes) -> bytes:
    top = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", *headers]
    return "\r\n".join(top).encode() + b"\r\n\r\n" + body


def nested_multipart(sender: str, to: str, depth: int = 2000) -> bytes:
    """multipart/mixed inside multipart/mixed, ``depth`` deep, text at the bottom."""
    opening = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1)
        for n in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(depth)))
    body = opening + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth + closing
    return _mail(sender, to, "nested", ["Content-Type: multipart/mixed; boundary=b0"], body)


def nested_messages(sender: str, to: str, depth: int = 1000) -> bytes:
    """message/rfc822 inside message/rfc822, ``depth`` deep (the stdlib recurses)."""
    inner = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for _ in range(depth):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    return _mail(sender, to, "matryoshka", [], inner)


def many_headers(sender: str, to: str, count: int = 10000) -> bytes:
    """Ten thousand headers, some of them the ones the bot reads (last value wins?)."""
    junk = [f"X-Junk-{n}: {'v' * 40}" for n in range(count)]
    junk += [f"References: <r{n}@example.com>" for n in range(50)]
    return _mail(sender, to, "headers", junk, b"so many headers\r\n")


def big_body(sender: str, to: str, size: int = 50 * 1024 * 1024) -> bytes:
    """A plain-text body of ``size`` bytes."""
    line = b"All work and no play makes Jack a dull boy. " * 23 + b"\r\n"
    return _mail(sender, to, "big", ["Content-Type: text/plain"], line * (size // len(line)))


def zip_attachment(sender: str, to: str) -> bytes:
    """A real zip, one member of which expands 1000-fold (never expanded by the bot)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        archive.writestr("zeros.bin", bytes(10 * 1024 * 1024))
    return _multipart(sender, to, "zip", [("application/zip", "report.zip", buffer.getvalue())])


TRAVERSAL_NAMES = [
    'filename="../../etc/passwd"',
    'filename="..\\\\..\\\\Windows\\\\System32\\\\evil.dll"',
    "filename*=utf-8''..%2F..%2F.ssh%2Fauthorized_keys",
    "filename*=utf-8''a%00b%00.txt",
    'filename="=?utf-8?q?..=2F..=2Fetc=2Fshadow?="',
    'filename="/absolute/path/x.sh"',
    'filename="\u202etxt.exe"',
    'filename="' + "long" * 2000 + '.pdf"',
    'filename=".."',
]


def traversal_filenames(sender: str, to: str) -> bytes:
    """Attachments named to escape a directory, or hold NUL and bidi characters."""
    parts = []
    for number, name in enumerate(TRAVERSAL_NAMES):
        parts.append(
            f"--x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Disposition: attachment; {name}\r\nContent-Transfer-Encoding: base64"
            f"\r\n\r\n{base64.b64encode(b'payload %d' % number).decode()}\r\n".encode()
        )
    body = b"--x\r\nContent-Type: text/plain\r\n\r\nfiles\r\n" + b"".join(parts) + b"--x--\r\n"
    return _mail(sender, to, "files", ["Content-Type: multipart/mixed; boundary=x"], body)


def broken_encodings(sender: str, to: str) -> bytes:
    """Every encoding mail can get wrong, in one mail, with 8-bit bytes in the headers."""
    parts = [
        b"Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n!!!not base64!!!\xff\xfe\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
        b"\r\n\r\n=ZZ=E9=\r\n=C3\r\n",
        b"Content-Type: text/html; charset=\x00bad\r\nContent-Transfer-Encoding: x-uuencode"
        b"\r\n\r\nbegin 644 x\r\n#86)C\r\n",
        b"Content-Type: application/pdf; name=\xe9t\xe9.pdf\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\nJVBERi0xLjQ=====\r\n",
    ]
    body = b"".join(b"--y\r\n" + part for part in parts)  # no closing boundary
    headers = "Content-Type: multipart/mixed; boundary=y"
    raw = _mail(sender, to, "=?x-bogus?q?=FF=FE?= RAW-8BIT", [headers], body)
    return raw.replace(b"RAW-8BIT", b"\xc3\x28\xff")


def unanswerable_from(to: str) -> bytes:
    """A From that is a legal address but no reply can be built for: quoted local part."""
    return _mail('"a b"@example.com', to, "poison", [], b"answer me\r\n")


def unsettling_subject(sender: str, to: str, depth: int = 12) -> bytes:
    """A subject of encoded words nested ``depth`` deep: it never settles into a header."""
    subject = "hello"
    for _ in range(depth):
        subject = f"=?utf-8?b?{base64.b64encode(subject.encode()).decode()}?="
    return _mail(sender, to, subject, [], b"answer me\r\n")


def specimens(sender: str, to: str) -> dict[str, bytes]:
    """Every fixed hostile mail, by name."""
    return {
        "nested multipart": nested_multipart(sender, to),
        "nested message/rfc822": nested_messages(sender, to),
        "ten thousand headers": many_headers(sender, to),
        "50 MB body": big_body(sender, to),
        "zip attachment": zip_attachment(sender, to),
        "traversal file names": traversal_filenames(sender, to),
        "broken encodings": broken_encodings(sender, to),
        "unanswerable From": unanswerable_from(to),
        "unsettling Subject": unsettling_subject(sender, to),
    }


def _multipart(sender: str, to: str, subject: str, files: list[tuple[str, str, bytes]]) -> bytes:
    parts = [b"--z\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"]
    for mime_type, name, data in files:
        parts.append(
            f"--z\r\nContent-Type: {mime_type}\r\nContent-Disposition: attachment; "
            f'filename="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'.encode()
            + base64.encodebytes(data).replace(b"\n", b"\r\n")
        )
    body = b"".join(parts) + b"--z--\r\n"
    return _mail(sender, to, subject, ["Content-Type: multipart/mixed; boundary=z"], body)


# -- generated mail --------------------------------------------------------------------

_NASTY = st.sampled_from(
    [
        "\r\nBcc: victim@example.com",
        "\x00",
        "\r",
        "\n",
        "=?utf-8?q?=0D=0ABcc:_v@x.org?=",
        "=?utf-8?b?DQpCY2M6IHZAeC5vcmc=?=",
        "=?utf-8?q?=00?=",
        "\u2028",
        "\u202e",
        "x" * 1000,
        "<a@b> <c@d>",
        '"quoted, name" <q@example.com>',
        "../../etc/passwd",
    ]
)
_VALUE = st.lists(st.one_of(_NASTY, st.text(max_size=12)), max_size=4).map("".join)
_IDS = st.one_of(
    st.just("<ok@example.com>"),
    _VALUE.map(lambda v: f"<{v}@example.com>"),
    _VALUE,
)


def _header(name: str, value: str) -> bytes:
    """A header line with raw bytes as a hostile mailer writes them (CR/LF may slip in)."""
    return f"{name}: {value}".encode("utf-8", "surrogatepass") + b"\r\n"


@st.composite
def _part(draw: st.DrawFn, depth: int) -> bytes:
    if depth >= 6 or draw(st.integers(0, 3)) == 0:
        filename = draw(_VALUE)
        kind = draw(st.sampled_from(["text/plain", "text/html", "application/zip", "image/png"]))
        encoding = draw(st.sampled_from(["base64", "quoted-printable", "8bit", "bogus"]))
        head = _header("Content-Type", f"{kind}; charset={draw(_VALUE)}")
        head += _header("Content-Transfer-Encoding", encoding)
        if draw(st.booleans()):
            head += _header("Content-Disposition", f'attachment; filename="{filename}"')
        return head + b"\r\n" + draw(st.binary(max_size=300))
    boundary = draw(st.sampled_from(["a", "b-1", "=_c", "d d"]))
    children = draw(st.lists(_part(depth + 1), max_size=3))
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + child + b"\r\n" for child in children)
    if draw(st.booleans()):
        body += b"--" + boundary.encode() + b"--\r\n"
    return _header("Content-Type", f'multipart/mixed; boundary="{boundary}"') + b"\r\n" + body


@st.composite
def hostile_mails(draw: st.DrawFn, sender: str = "alice@example.com") -> bytes:
    """A whole mail: hostile values in every header a reply could echo, a MIME tree."""
    display = draw(_VALUE)
    head = _header("From", f"{display} <{sender}>" if draw(st.integers(0, 4)) else draw(_VALUE))
    head += _header("To", "bot@example.com")
    head += _header("Subject", draw(_VALUE))
    head += _header("Message-ID", draw(_IDS))
    head += _header("References", " ".join(draw(st.lists(_IDS, max_size=4))))
    if draw(st.booleans()):
        head += _header("Reply-To", draw(_VALUE) + f" <{sender}>")
    if draw(st.booleans()):
        head += _header("Authentication-Results", "mx.example; " + draw(_VALUE))
    head += b"X-Filler: y\r\n" * draw(st.integers(0, 50))
    return head + draw(_part(0))


# -- what every mail must come to ------------------------------------------------------

SETTINGS = finalize(
    EmailSettings(
        imap_host="localhost",
        smtp_host="localhost",
        imap_username="bot@example.com",
        imap_password="p",
        allowed_senders=["example.com"],
        trusted_authserv_id="mx.example",
    ),
    "email",
)
REPLY_HEADERS = {
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "MIME-Version", "Auto-Submitted", "X-Loop", "Content-Type", "Content-Transfer-Encoding",
}  # fmt: skip


def normalizing_adapter() -> EmailAdapter:
    """An adapter that is never connected: only normalization and the filter are used."""
    return EmailAdapter("email", SETTINGS)


def check_normalized_and_replied(adapter: EmailAdapter, raw: bytes) -> None:
    """What every mail, however hostile, must come to (the property test and the fuzz run).

    Normalization never raises and gives JSON-safe metadata; the filter either gives a
    reason or lets through a mail a reply can be built for, whose headers read back are
    exactly ours with one recipient, the one the mail asked for.

    :raises AssertionError: or ChannelError when a reply cannot be built after all.
    """
    fetched = FetchedMail("INBOX", 1, 7, (), raw, size=len(raw))
    message = adapter.spacebot_normalize_inbound(fetched)
    json.dumps(message.metadata)  # the state store keeps it as JSON
    reason = adapter.spacebot_filter_inbound(message)
    if reason is not None:
        assert isinstance(reason, str) and reason
        return
    # Let through: a reply can be built (the filter tried), and it is what we meant.
    metadata = message.metadata
    recipient = metadata.get("reply_to") or metadata.get("from") or message.sender_id
    reply = compose.compose_reply(
        from_address="bot@example.com",
        from_name="Bot",
        to=recipient,
        to_name=metadata.get("from_name") if recipient == metadata.get("from") else None,
        original_subject=metadata.get("subject", ""),
        original_message_id=message.id,
        original_references=metadata.get("references", []),
        text=message.content.text,
        message_id=compose.reply_message_id("d-1", "bot@example.com", message.conversation_id),
    )
    read_back = email.message_from_bytes(reply.as_bytes(), policy=policy.default)
    assert set(read_back.keys()) <= REPLY_HEADERS
    assert len(read_back.keys()) == len(set(read_back.keys()))
    [to] = read_back["To"].addresses
    assert to.addr_spec == recipient
