"""parse_mail never raises and always respects its limits, whatever the mail.

Hypothesis builds MIME trees the way broken and hostile mailers do: nesting, charsets
Python does not know, transfer encodings that lie, garbage bytes, missing or wrong
boundaries, three kinds of line ends, and random damage on top.
"""

from __future__ import annotations

import email.utils
import re
from email.message import Message

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacebot_email.parse import ParsedMail, _content_charset, decode_header_text, parse_mail

MAX_BODY = 300
MAX_ATTACHMENT = 200
NOTE = re.compile(r"\n\n\[message truncated: it was over \d+ bytes\]$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

CHARSETS = st.sampled_from(
    [
        *("utf-8", "us-ascii", "iso-8859-1", "x-unknown", "fakescii", "utf-16", "iso-2022-jp"),
        *("gb2312", "", "_iso-2022-jp$ESC", "utf-7", "base64", "charset=us-ascii", '"utf-8"'),
    ]
)
ENCODINGS = st.sampled_from(
    ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", ""]
)
LEAF_TYPES = st.sampled_from(
    [
        *("text/plain", "text/html", "application/octet-stream", "image/png", "message/rfc822"),
        *("message/delivery-status", "text/calendar", "multipart/mixed", "garbage", ""),
    ]
)
TOKENS = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=12)
HEADER_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda c, e, t: f"=?{c}?{e}?{t}?=", CHARSETS, st.sampled_from("QqBbX"), TOKENS),
)
BODIES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"SGVsbG8gd29ybGQ!!!*", b"=E9=\r\n=ZZ=", b"<p>x &amp; <b>y", b""]),
)


@st.composite
def leaves(draw: st.DrawFn) -> list[str | bytes]:
    """One non-multipart part: headers (some garbled, some missing) and a body."""
    lines: list[str | bytes] = []
    charset = draw(CHARSETS)
    lines.append(f"Content-Type: {draw(LEAF_TYPES)}; charset={charset}")
    if draw(st.booleans()):
        lines.append(f"Content-Transfer-Encoding: {draw(ENCODINGS)}")
    if draw(st.booleans()):
        name = draw(st.one_of(st.text(max_size=30), HEADER_TEXT))
        form = draw(st.sampled_from(['filename="{}"', "filename*=%s''{}", "name={}"]))
        form = form.replace("%s", draw(CHARSETS))
        disposition = draw(st.sampled_from(["attachment", "inline", "bogus"]))
        lines.append(f"Content-Disposition: {disposition}; " + form.format(name))
    lines.append("")
    lines.append(draw(BODIES))
    return lines


@st.composite
def parts(draw: st.DrawFn, depth: int = 0) -> list[str | bytes]:
    """A part: a leaf, or a multipart whose boundaries may be missing or wrong."""
    if depth >= 4 or draw(st.integers(0, 2)) == 0:
        return draw(leaves())
    boundary = draw(st.text("abc-=_'()+,./:?", min_size=1, max_size=8))
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report", "signed"]))
    report = draw(st.sampled_from(["", "; report-type=delivery-status", "; report-type*=x''%"]))
    lines: list[str | bytes] = [
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{report}',
        "",
    ]
    for child in draw(st.lists(parts(depth + 1), max_size=4)):
        used = boundary if draw(st.integers(0, 9)) else boundary + "x"
        lines.append(f"--{used}")
        lines.extend(child)
    if draw(st.booleans()):
        lines.append(f"--{boundary}--")
    return lines


@st.composite
def mails(draw: st.DrawFn) -> bytes:
    """A whole mail: odd headers, a part tree, one kind of line end, then damage."""
    headers = [
        f"From: {draw(HEADER_TEXT)} <{draw(TOKENS)}@{draw(TOKENS)}>",
        f"To: {draw(st.text(max_size=40))}",
        f"Subject: {draw(HEADER_TEXT)}",
        f"Message-ID: {draw(st.sampled_from(['<a@b>', '', '<>', 'bare@id', '<<x>']))}",
        f"References: {draw(st.text(max_size=40))}",
        f"Date: {draw(st.text(max_size=30))}",
    ]
    lines = draw(st.permutations(headers)) + draw(parts())
    newline = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    chunks = [
        line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line for line in lines
    ]
    raw = newline.encode().join(chunks)
    for _ in range(draw(st.integers(0, 3))):  # random damage: cut, insert or delete
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at + draw(st.integers(0, 8)) :]
    return raw


def _check(mail: ParsedMail) -> None:
    """The guarantees every ParsedMail keeps."""
    assert mail.text.strip()
    mail.text.encode("utf-8")  # no lone surrogates
    body = NOTE.sub("", mail.text)
    assert mail.body_truncated == (body != mail.text)
    if not mail.text.startswith("[no readable text"):
        assert len(body.encode("utf-8")) <= MAX_BODY
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.message_id.startswith("<") and mail.message_id.endswith(">")
    assert mail.date is None or mail.date.tzinfo is not None
    assert "parser-error" not in mail.defects
    for attachment in mail.attachments:
        assert attachment.filename and not CONTROL.search(attachment.filename)
        assert "/" not in attachment.filename and "\\" not in attachment.filename
        if attachment.data is None:  # over the limit, or undecodable
            assert attachment.rejected_reason
            assert attachment.size > MAX_ATTACHMENT or attachment.size == 0
        else:
            assert attachment.rejected_reason is None
            assert len(attachment.data) == attachment.size <= MAX_ATTACHMENT


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(mails())
def test_generated_mime_never_raises_and_respects_limits(raw: bytes) -> None:
    _check(parse_mail(raw, max_body_bytes=MAX_BODY, max_attachment_bytes=MAX_ATTACHMENT))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _check(parse_mail(raw, max_body_bytes=MAX_BODY, max_attachment_bytes=MAX_ATTACHMENT))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=[]), max_size=200) | HEADER_TEXT)
def test_header_decoding_never_raises(value: str) -> None:
    decoded = decode_header_text(value)
    assert "=?" in value or decoded == value


_ATOM = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789.-_+", min_size=1, max_size=10)
_SIMPLE_ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", _ATOM, _ATOM)
_SIMPLE_ENTRY = st.one_of(
    _SIMPLE_ADDRESS,
    st.builds(
        lambda name, addr: f"{name} <{addr}>", st.text("abc xyz.", max_size=12), _SIMPLE_ADDRESS
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_SIMPLE_ENTRY, min_size=1, max_size=4))
def test_fast_address_path_agrees_with_the_stdlib(entries: list[str]) -> None:
    value = ", ".join(entries)
    mail = parse_mail(f"From: x@y\r\nTo: {value}\r\n\r\nBody".encode())
    expected = [
        (" ".join(name.split()), address.strip())
        for name, address in email.utils.getaddresses([value])
        if name or address
    ]
    assert [(a.name, a.address) for a in mail.to] == expected


_BASE64_LINE = st.text("QUJD*=\r", max_size=12)


@settings(max_examples=500, deadline=None)
@given(st.lists(_BASE64_LINE, max_size=5), st.sampled_from(["\r\n", "\n"]))
def test_fast_base64_decoding_agrees_with_the_stdlib(lines: list[str], line_end: str) -> None:
    """A base64 attachment decodes to the stdlib's bytes, whatever its lines hold."""
    body = line_end.join(lines)
    raw = (
        "From: x@y\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{body}"
    ).encode()
    expected = email.message_from_bytes(raw).get_payload(decode=True)
    attachment = parse_mail(raw).attachments[0]
    assert attachment.data == expected


_CONTENT_TYPE_PIECES = st.sampled_from(
    [
        *("text/plain", "text/html", "TEXT/Plain", "", "text", " ", "\t", "\r\n\t"),
        *(";", "; ", "=", '"', "\\", "(x)", "charset", "CharSet", "charset*", "*0"),
        *("utf-8", "UTF-8", "iso-8859-1", "x-unknown", "''", "us-ascii'en'", "%E9", "é"),
        *("format=flowed", "name=a.txt", "<utf-8>", "utf 8"),
    ]
)
_SPACE = st.sampled_from(["", " ", "\t", "\r\n\t", "  "])
#: ``type; charset=NAME`` and its near misses, which the fast path must tell apart.
_CHARSET_HEADER = st.builds(
    "{}{};{}{}{}={}{}{}{}{}{}".format,
    st.sampled_from(["text/plain", "TEXT/HTML", "", "text/plain; format=flowed", "a=b"]),
    _SPACE,
    _SPACE,
    st.sampled_from(["charset", "CHARSET", "CharSet", "charset*", "xcharset", "charset*0"]),
    _SPACE,
    _SPACE,
    st.sampled_from(["", '"', "'", "<"]),
    st.sampled_from(["utf-8", "UTF-8", "ISO-8859-1", "", "x:y", "a+b", "é", "us-ascii''x"]),
    st.sampled_from(["", '"', "'", ">"]),
    _SPACE,
    st.sampled_from(["", ";", "; format=flowed", '"', "\\", "(c)"]),
)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(_CHARSET_HEADER, st.lists(_CONTENT_TYPE_PIECES, max_size=10).map("".join)))
def test_fast_charset_path_agrees_with_the_stdlib(content_type: str) -> None:
    """The charset a text part is decoded with is the stdlib's, whatever its header."""
    part = Message()
    part["Content-Type"] = content_type
    assert _content_charset(part) == part.get_content_charset()
