"""The mails we build: threading headers, subject, sender, attachments, header safety.

Every test reads the composed bytes back with the stdlib parser, the way a recipient's
mail program would, and asserts on what it sees there.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacebot_core.errors import ChannelError
from spacebot_core.types import OutboundResponse
from spacebot_email.compose import (
    REFERENCES_TAIL,
    compose_message,
    compose_reply,
    is_message_id,
    new_message_id,
    reply_message_id,
    reply_references,
)
from spacebot_email.threads import reply_subject

BOT = "bot@example.com"
REPLY_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Auto-Submitted",
    "X-Loop",
    "Content-Type",
    "Content-Transfer-Encoding",
]
FRESH_HEADERS = [name for name in REPLY_HEADERS if name not in ("In-Reply-To", "References")]


def reply(**overrides: object) -> EmailMessage:
    """A reply with sensible defaults; tests override what they look at."""
    arguments: dict[str, object] = {
        "from_address": BOT,
        "from_name": "Spacebot",
        "to": "alice@example.org",
        "original_subject": "Lunch?",
        "original_message_id": "<m2@example.org>",
        "original_references": ["<m1@example.org>"],
        "text": "Yes, at noon.",
        "message_id": reply_message_id("delivery-1", BOT),
        "date": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    }
    arguments.update(overrides)
    return compose_reply(**arguments)  # type: ignore[arg-type]


def read_back(message: EmailMessage) -> EmailMessage:
    """The message as a recipient's mail program parses it from the wire."""
    raw = message.as_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def text_of(part: EmailMessage) -> str:
    """A text part's content with LF line ends (a parsed part keeps the wire's CRLF)."""
    return part.get_content().replace("\r\n", "\n")


def header_lines(message: EmailMessage) -> list[bytes]:
    """The raw lines of the top-level header section, as sent."""
    return message.as_bytes().split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_reply_threads_under_the_original() -> None:
    parsed = read_back(reply(original_references=["<m0@example.org>", "<m1@example.org>"]))

    assert parsed["In-Reply-To"] == "<m2@example.org>"
    assert parsed["References"].split() == [
        "<m0@example.org>",
        "<m1@example.org>",
        "<m2@example.org>",
    ]
    assert parsed["Message-ID"] == reply_message_id("delivery-1", BOT)


def test_reply_has_exactly_the_intended_headers() -> None:
    parsed = read_back(reply())

    assert parsed.keys() == REPLY_HEADERS
    assert parsed.defects == []
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["X-Loop"] == BOT
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"].datetime == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"


def test_lines_end_with_crlf() -> None:
    raw = reply(text="one\ntwo\rthree\r\nfour").as_bytes()

    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Lunch?", "Re: Lunch?"),
        ("Re: Lunch?", "Re: Lunch?"),
        ("RE: re:Lunch?", "Re: Lunch?"),
        ("Re[2]: Lunch?", "Re: Lunch?"),
        ("AW: Re: Lunch?", "Re: Lunch?"),
        ("Reply needed", "Re: Reply needed"),
        ("", "Re:"),
        ("  Re:  ", "Re:"),
    ],
)
def test_reply_subject_has_re_exactly_once(original: str, expected: str) -> None:
    assert reply_subject(original) == expected
    assert read_back(reply(original_subject=original))["Subject"] == expected


def test_from_carries_the_display_name() -> None:
    parsed = read_back(reply(from_name="Spacebot"))

    assert parsed["From"].addresses[0].display_name == "Spacebot"
    assert parsed["From"].addresses[0].addr_spec == BOT


def test_non_ascii_display_name_is_encoded() -> None:
    message = reply(from_name="Späcebot «Support»", to_name="Zoë")
    parsed = read_back(message)

    assert all(line.isascii() for line in header_lines(message))
    assert parsed["From"].addresses[0].display_name == "Späcebot «Support»"
    assert parsed["To"].addresses[0].display_name == "Zoë"
    assert parsed["To"].addresses[0].addr_spec == "alice@example.org"


def test_from_without_name_is_the_bare_address() -> None:
    assert read_back(reply(from_name=None))["From"] == BOT


def test_body_survives_utf8_and_long_lines() -> None:
    text = "Grüße, 你好 ✓\n" + "x" * 3000 + "\n" + "ю" * 500 + "\nend"
    message = reply(text=text)
    parsed = read_back(message)

    assert text_of(parsed) == text + "\n"
    assert max(len(line) for line in message.as_bytes().split(b"\r\n")) <= 998


def test_attachments_round_trip() -> None:
    files = [
        OutboundResponse.File("report.pdf", b"%PDF-1.7\x00\xff\xfe binary", "application/pdf"),
        OutboundResponse.File("résumé 2024.txt", "Zoë\n".encode(), "text/plain"),
    ]
    message = reply(attachments=files)
    parsed = read_back(message)

    assert parsed.get_content_type() == "multipart/mixed"
    body, *attached = list(parsed.iter_parts())
    assert text_of(body) == "Yes, at noon.\n"
    assert [(a.get_filename(), a.get_content_type()) for a in attached] == [
        ("report.pdf", "application/pdf"),
        ("résumé 2024.txt", "text/plain"),
    ]
    assert [a.get_payload(decode=True) for a in attached] == [f.data for f in files]
    assert b"filename*=utf-8''r%C3%A9sum%C3%A9%202024.txt" in message.as_bytes()


def test_attachment_name_cannot_point_into_a_directory() -> None:
    files = [
        OutboundResponse.File("../../etc/passwd", b"x"),
        OutboundResponse.File("C:\\a\\b", b"y"),
    ]
    names = [a.get_filename() for a in read_back(reply(attachments=files)).iter_attachments()]

    assert names == ["passwd", "b"]


def test_unusable_mime_type_becomes_octet_stream() -> None:
    files = [
        OutboundResponse.File("a", b"x", "not a type"),
        OutboundResponse.File("b", b"x", "multipart/mixed"),
    ]
    types = [a.get_content_type() for a in read_back(reply(attachments=files)).iter_attachments()]

    assert types == ["application/octet-stream", "application/octet-stream"]


def test_reply_message_id_is_deterministic() -> None:
    first = reply_message_id("imap:INBOX:42:7", BOT)

    assert first == reply_message_id("imap:INBOX:42:7", BOT)
    assert first != reply_message_id("imap:INBOX:42:8", BOT)
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", first)
    assert reply(message_id=first)["Message-ID"] == first


def test_new_message_id_is_random_and_valid() -> None:
    ids = {new_message_id("Bot@Mail.Example.COM") for _ in range(100)}

    assert len(ids) == 100
    assert all(is_message_id(i) and i.endswith("@mail.example.com>") for i in ids)


def test_message_id_domain_falls_back_when_unusable() -> None:
    assert reply_message_id("d", "no-at-sign").endswith("@spacebot.invalid>")
    assert reply_message_id("d", "bot@bücher.example").endswith("@xn--bcher-kva.example>")


def test_references_are_deduplicated_in_order() -> None:
    refs = ["<a@x>", "<b@x>", "<a@x>", "<p@x>", "<c@x>"]

    assert reply_references(refs, "<p@x>") == ["<a@x>", "<b@x>", "<c@x>", "<p@x>"]


def test_long_reference_chain_keeps_root_and_latest() -> None:
    refs = [f"<{n}@x>" for n in range(100)]
    parsed = read_back(reply(original_references=refs, original_message_id="<100@x>"))
    kept = parsed["References"].split()

    assert kept == ["<0@x>", *[f"<{n}@x>" for n in range(101 - REFERENCES_TAIL, 101)]]
    assert len(kept) == REFERENCES_TAIL + 1


@pytest.mark.parametrize(
    "bad_id",
    [
        "no-brackets@x",
        "<no-at-sign>",
        "<a b@x>",
        "<a@x>\r\nBcc: evil@x",
        "<a@x\x00>",
        "<=?utf-8?q?a=0D=0ABcc:_x@y?=@x>",
        "<a@x> <b@x>",
        "<" + "a" * 300 + "@x>",
        "",
    ],
)
def test_malformed_message_ids_are_dropped(bad_id: str) -> None:
    parsed = read_back(reply(original_message_id=bad_id, original_references=[bad_id, "<ok@x>"]))

    assert "In-Reply-To" not in parsed
    assert parsed["References"] == "<ok@x>"
    assert parsed.keys() == [n for n in REPLY_HEADERS if n != "In-Reply-To"]


HOSTILE = [
    "a\r\nBcc: evil@example.net",
    "a\nBcc: evil@example.net",
    "a\rBcc: evil@example.net",
    "a\x00Bcc: evil@example.net",
    "a\r\n\r\nbody takeover",
    "=?utf-8?q?a=0D=0ABcc:_evil@example.net?=",
    "=?utf-8?b?YQ0KQmNjOiBldmlsQGV4YW1wbGUubmV0?=",
    "x =?utf-8?q?=3D=3Futf-8=3Fq=3Fa=3D0D=3D0ABcc:_evil@example.net=3F=3D?= y",
    "a\u2028Bcc: evil@example.net\u2029",
    "a\x85Bcc: evil@example.net",
    '"x" <evil@example.net>, "y',
    "a\udcffb",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_inbound_values_cannot_add_a_header(value: str) -> None:
    message = reply(
        original_subject=value,
        from_name=value,
        to_name=value,
        text=value,
        attachments=[OutboundResponse.File(value, b"data", "text/plain")],
    )
    parsed = read_back(message)

    assert parsed.keys() == [*REPLY_HEADERS[:-2], "Content-Type"]
    assert parsed["To"].addresses[0].addr_spec == "alice@example.org"
    assert len(parsed["To"].addresses) == 1
    assert len(parsed["From"].addresses) == 1
    assert "\r" not in parsed["Subject"] and "\n" not in parsed["Subject"]
    assert all(not line.lower().startswith(b"bcc") for line in header_lines(message))
    body, attached = parsed.iter_parts()
    assert body.keys() == ["Content-Type", "Content-Transfer-Encoding"]
    assert attached.keys() == ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition"]
    assert attached.get_payload(decode=True) == b"data"


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org\r\nBcc: evil@example.net",
        "Alice <alice@example.org>",
        "alice@example.org, evil@example.net",
        "=?utf-8?q?a=0D=0A?=@example.org",
        "alice",
        "",
    ],
)
def test_recipient_must_be_a_plain_address(address: str) -> None:
    with pytest.raises(ChannelError) as caught:
        reply(to=address)

    assert caught.value.hint


def test_over_long_subject_is_folded_not_truncated() -> None:
    subject = " ".join(f"word{n}" for n in range(200)) + " " + "y" * 1500
    message = reply(original_subject=subject)
    lines = header_lines(message)

    assert read_back(message)["Subject"] == "Re: " + subject
    assert all(len(line) <= 998 for line in lines)
    assert all(line[:1] in (b" ", b"\t") or b":" in line for line in lines)


def test_fresh_message_has_no_threading_headers() -> None:
    message = compose_message(
        from_address=BOT,
        from_name="Spacebot",
        to="alice@example.org",
        subject=None,
        text="Hello",
        message_id=new_message_id(BOT),
    )
    parsed = read_back(message)

    assert parsed.keys() == FRESH_HEADERS
    assert parsed["Subject"] == "Message from Spacebot"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Loop"] == BOT


def test_fresh_message_keeps_given_subject() -> None:
    message = compose_message(
        from_address=BOT,
        from_name=None,
        to="alice@example.org",
        subject="Re: your order\r\nBcc: evil@example.net",
        text="Hello",
        message_id=new_message_id(BOT),
    )

    assert read_back(message)["Subject"] == "Re: your order Bcc: evil@example.net"


def test_our_own_message_id_must_be_valid() -> None:
    with pytest.raises(ChannelError):
        reply(message_id="<a@x>\r\nBcc: evil@example.net")


#: Pieces an attacker would combine: line breaks, encoded words hiding line breaks,
#: quotes and address syntax.
FRAGMENTS = ["\r", "\n", "\x00", "=?", "?=", "=?utf-8?q?=0D=0A?=", "=?utf-8?b?DQo=?=", "Bcc: x@y"]
FRAGMENTS += ['"', "<", ">", ",", "\\", "(", ")", ":", ";", "@", "'", "%", "*", "\t"]
header_text = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
    | st.sampled_from(FRAGMENTS),
    max_size=12,
).map("".join) | st.sampled_from(HOSTILE)


@settings(max_examples=200, deadline=None)
@given(subject=header_text, name=header_text, filename=header_text, text=header_text)
def test_no_value_can_change_the_header_set(
    subject: str, name: str, filename: str, text: str
) -> None:
    message = reply(
        original_subject=subject,
        from_name=name,
        to_name=name,
        text=text,
        attachments=[OutboundResponse.File(filename, b"data")],
    )
    parsed = read_back(message)

    assert parsed.keys() == [*REPLY_HEADERS[:-2], "Content-Type"]
    assert parsed.defects == []
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/plain",
        "application/octet-stream",
    ]
    assert not re.search(r"[\x00-\x1f\x7f]", parsed["Subject"])
    assert len(parsed["From"].addresses) == 1 and len(parsed["To"].addresses) == 1


# -- Values sent without a read-back round trip are read back as written --------------

_PRINTABLE_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
_PLAIN_WORDS = st.text(st.sampled_from("Ab9 .'_-"), min_size=1, max_size=120)


def _words(text: str) -> str:
    """``text`` with its whitespace runs as single spaces (folding may change them)."""
    return " ".join(text.split())


@settings(max_examples=300, deadline=None)
@given(subject=_PRINTABLE_ASCII.filter(lambda text: "=?" not in text and text.strip()))
def test_plain_subject_reads_back_as_written(subject: str) -> None:
    parsed = read_back(reply(original_subject=subject))
    assert _words(parsed["Subject"]) == _words(reply_subject(subject))


@settings(max_examples=300, deadline=None)
@given(name=_PLAIN_WORDS.filter(str.strip), filename=_PLAIN_WORDS.filter(str.strip))
def test_plain_name_and_filename_read_back_as_written(name: str, filename: str) -> None:
    file = OutboundResponse.File(filename, b"data", "text/plain")
    parsed = read_back(reply(to_name=name, attachments=[file]))
    assert _words(parsed["To"].addresses[0].display_name) == _words(name)
    attachment = next(part for part in parsed.walk() if part.get_filename() is not None)
    assert attachment.get_filename() == filename.strip()


@settings(max_examples=200, deadline=None)
@given(left=st.text(st.sampled_from("a9.=?!#_-"), min_size=1, max_size=30))
def test_message_ids_taken_are_read_back_as_written(left: str) -> None:
    candidate = f"<{left}@example.com>"
    if is_message_id(candidate):
        parsed = read_back(reply(original_message_id=candidate, original_references=[]))
        assert parsed["In-Reply-To"].strip() == candidate
