"""Every real-world mail of the corpus parses, and agrees with other parsers' answers.

The corpus (``tests/corpus``, see its README) holds 1,340 mails from the test suites of
mail parsers. Two of them ship what their parser found: imap_tools a ``.py`` file
beside each mail, stalwart's mail-parser a ``.json`` parse tree. Where we differ on
purpose, the case is listed below with the reason, and marked as an expected failure
(strict: if the difference goes away, the list must be updated).
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from spacebot_email.parse import ParsedMail, parse_mail

CORPUS = Path(__file__).parent / "corpus"
MAIL_SUFFIXES = {".eml", ".raw", ".txt"}
ALL_MAILS = sorted(
    path for path in CORPUS.rglob("*") if path.suffix in MAIL_SUFFIXES and path.is_file()
)
IMAP_TOOLS_MAILS = sorted(
    path for path in (CORPUS / "imap_tools").rglob("*.eml") if path.with_suffix(".py").exists()
)
STALWART_MAILS = sorted(
    path
    for path in (CORPUS / "stalwart-mail-parser").rglob("*.eml")
    if path.with_suffix(".json").exists()
)

# Not descending into attached messages is by design: a forwarded mail is an .eml
# attachment, not part of the body. imap_tools walks into it.
_NESTED = "imap_tools also reads the text and files inside attached message/rfc822 parts"
IMAP_TOOLS_KNOWN_DIFFERENCES = {
    ("subject", "error_emails/invalid_subject_characters.eml"): (
        "raw 8-bit bytes in Subject: we decode them, imap_tools drops them"
    ),
    ("subject", "rfc2822/example14.eml"): (
        "RFC 2047 keeps the space between a plain word and an encoded word; imap_tools drops it"
    ),
    ("text", "attachment_2_base64.eml"): "imap_tools shows the base64 of attached messages",
    ("text", "attachment_7bit.eml"): _NESTED,
    ("text", "attachment_8bit.eml"): _NESTED,
    ("text", "forwarded_message.eml"): _NESTED,
    ("text", "attachment_emails/attachment_message_rfc822.eml"): _NESTED,
    ("text", "mime_emails/raw_email_with_mimepart_without_content_type.eml"): _NESTED,
    ("text", "multipart_report_emails/multi_address_bounce1.eml"): _NESTED,
    ("text", "multipart_report_emails/multi_address_bounce2.eml"): _NESTED,
    ("text", "multipart_report_emails/multipart_report_multiple_status.eml"): _NESTED,
    ("text", "error_emails/content_transfer_encoding_plain.eml"): (
        "Latin-1 quotes: we decode them as declared, imap_tools drops them"
    ),
    ("text", "plain_emails/raw_email6.eml"): "8-bit text: we decode it, imap_tools drops it",
    ("attachments", "attachment_emails/attachment_message_rfc822.eml"): _NESTED,
}
STALWART_KNOWN_DIFFERENCES = {
    ("subject", "legacy/010.eml"): "raw Latin-1 byte: we decode it, stalwart writes U+FFFD",
    ("subject", "legacy/020.eml"): "raw Latin-1 byte: we decode it, stalwart writes U+FFFD",
    ("subject", "legacy/022.eml"): "raw Latin-1 byte: we decode it, stalwart writes U+FFFD",
    ("subject", "legacy/027.eml"): "raw Latin-1 byte: we decode it, stalwart writes U+FFFD",
    ("subject", "legacy/052.eml"): "raw Latin-1 byte: we decode it, stalwart writes U+FFFD",
    ("text", "legacy/052.eml"): "raw Latin-1 bytes: we decode them, stalwart writes U+FFFD",
    ("subject", "malformed/019.eml"): (
        "the first header line is garbled ('Fro :'), so the stdlib reads it all as body"
    ),
    ("text", "malformed/020.eml"): (
        "a part's headers run into its child's: stalwart shows the raw MIME, we the HTML part"
    ),
    ("text", "malformed/021.eml"): (
        "a part's headers run into its child's: stalwart shows the raw MIME, we the HTML part"
    ),
    ("text", "malformed/005.eml"): (
        "the stdlib loses the parts behind ambiguous boundaries; we show the raw body instead"
    ),
    ("text", "thirdparty/000.eml"): "we drop NUL characters and turn a bare CR into a newline",
    ("from", "rfc/001.eml"): "From without an @: stalwart calls it a name, we keep it as written",
    ("from", "rfc/004.eml"): "From without an @: stalwart calls it a name, we keep it as written",
}


def _rel(path: Path, root: str) -> str:
    return path.relative_to(CORPUS / root).as_posix()


def _cases(paths: list[Path], root: str, aspects: tuple[str, ...], known: dict) -> list:
    """One pytest param per (mail, aspect), known differences marked xfail(strict)."""
    params = []
    for path in paths:
        for aspect in aspects:
            reason = known.get((aspect, _rel(path, root)))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(
                pytest.param(path, aspect, id=f"{aspect}:{_rel(path, root)}", marks=marks)
            )
    return params


def _squash(text: str) -> str:
    """Whitespace-insensitive form: line ends, trailing spaces and flowed breaks differ."""
    return " ".join(text.split())


@pytest.mark.parametrize("path", ALL_MAILS, ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_every_corpus_mail_parses_to_readable_text(path: Path) -> None:
    mail = parse_mail(path.read_bytes())
    assert isinstance(mail, ParsedMail)
    assert mail.text.strip(), "the body is never empty: text or a placeholder"
    mail.text.encode("utf-8")  # no lone surrogates left over from 8-bit bytes
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.message_id.startswith("<") and mail.message_id.endswith(">")
    assert mail.date is None or mail.date.tzinfo is not None
    assert "parser-error" not in mail.defects
    for attachment in mail.attachments:
        assert attachment.filename and "/" not in attachment.filename
        assert "\\" not in attachment.filename and "\x00" not in attachment.filename
        assert attachment.data is None or len(attachment.data) == attachment.size


def test_corpus_is_all_there() -> None:
    assert len(ALL_MAILS) == 1340
    assert len(IMAP_TOOLS_MAILS) == 113
    assert len(STALWART_MAILS) == 107


def test_whole_corpus_parses_in_seconds() -> None:
    raws = [path.read_bytes() for path in ALL_MAILS]
    start = time.perf_counter()
    for raw in raws:
        parse_mail(raw)
    assert time.perf_counter() - start < 10


# -- imap_tools ---------------------------------------------------------------------------


class _EmailAddress:
    """Stand-in for imap_tools.EmailAddress, which the expected-data files import."""

    def __init__(self, name: str = "", email: str = "", full: str = "") -> None:
        self.name, self.email, self.full = name, email, full


def _imap_tools_expected(path: Path) -> dict[str, Any]:
    stand_in = types.ModuleType("imap_tools")
    stand_in.EmailAddress = _EmailAddress  # type: ignore[attr-defined]
    saved = sys.modules.get("imap_tools")
    sys.modules["imap_tools"] = stand_in
    try:
        namespace: dict[str, Any] = {}
        source = path.with_suffix(".py").read_text(encoding="utf-8")
        exec(compile(source, str(path.with_suffix(".py")), "exec"), namespace)
        return namespace["DATA"]
    finally:
        if saved is None:
            del sys.modules["imap_tools"]
        else:
            sys.modules["imap_tools"] = saved


@pytest.mark.parametrize(
    ("path", "aspect"),
    _cases(
        IMAP_TOOLS_MAILS,
        "imap_tools",
        ("subject", "from", "text", "attachments"),
        IMAP_TOOLS_KNOWN_DIFFERENCES,
    ),
)
def test_agrees_with_imap_tools(path: Path, aspect: str) -> None:
    expected = _imap_tools_expected(path)
    mail = parse_mail(path.read_bytes())
    if aspect == "subject":
        assert mail.subject == _squash(expected["subject"])
    elif aspect == "from":
        sender = mail.sender.address if mail.sender else ""
        assert sender.lower() == expected["from_"].lower()
        if expected.get("from_values"):
            assert mail.sender is not None
            assert mail.sender.name == expected["from_values"].name
    elif aspect == "text":
        if not expected["text"].strip():
            pytest.skip("imap_tools found no text/plain (HTML-only or no body)")
        assert _squash(mail.text) == _squash(expected["text"])
    else:
        # Files without a name get a generated one here ("attachment-2.jpg").
        names = sorted(
            a.filename for a in mail.attachments if not a.filename.startswith("attachment-")
        )
        assert names == sorted(a["filename"] for a in expected["attachments"] if a["filename"])
        sizes = {a.filename: a.size for a in mail.attachments}
        for attachment in expected["attachments"]:
            if attachment["filename"] and attachment["content_type"] != "message/rfc822":
                assert sizes[attachment["filename"]] == len(attachment["payload"])


# -- stalwart mail-parser -------------------------------------------------------------


def _stalwart_header(tree: dict[str, Any], name: str) -> Any:
    for header in tree["parts"][0]["headers"]:
        if header["name"] == name:
            return header["value"]
    return None


@pytest.mark.parametrize(
    ("path", "aspect"),
    _cases(
        STALWART_MAILS,
        "stalwart-mail-parser",
        ("subject", "from", "text"),
        STALWART_KNOWN_DIFFERENCES,
    ),
)
def test_agrees_with_stalwart(path: Path, aspect: str) -> None:
    tree = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    mail = parse_mail(path.read_bytes())
    if aspect == "subject":
        subject = _stalwart_header(tree, "subject")
        if not isinstance(subject, dict) or "Text" not in subject:
            pytest.skip("stalwart found no subject text")
        assert mail.subject == _squash(subject["Text"])
    elif aspect == "from":
        sender = _stalwart_header(tree, "from")
        addresses = (
            (sender or {}).get("Address", {}).get("List") if isinstance(sender, dict) else None
        )
        if not addresses:
            pytest.skip("stalwart found no From list")
        assert mail.sender is not None
        assert mail.sender.address.lower() == (addresses[0]["address"] or "").lower()
        assert mail.sender.name == _squash(addresses[0]["name"] or "")
    else:
        texts = [tree["parts"][i]["body"].get("Text") for i in tree["text_body"]]
        texts = [text for text in texts if text and text.strip()]
        if not texts:
            pytest.skip("stalwart found no plain text body")
        # Their first text part opens our body (we may join later inline text parts).
        assert _squash(mail.text).startswith(_squash(texts[0])[:200])
