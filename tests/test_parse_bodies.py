"""What an agent reads of a mail: the body text, the attachments and decoded headers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

from spacebot_email.parse import Address, parse_mail


def _mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Alice <alice@example.com>")
    msg["To"] = headers.pop("To", "bot@example.com")
    msg["Subject"] = headers.pop("Subject", "Hello")
    msg["Message-ID"] = headers.pop("Message_ID", "<first@example.com>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg


def _raw(*lines: str) -> bytes:
    return "\r\n".join(lines).encode("utf-8")


# -- Which body ---------------------------------------------------------------------


def test_plain_text_is_preferred_over_html() -> None:
    msg = _mail()
    msg.set_content("The plain version.\n")
    msg.add_alternative("<p>The <b>HTML</b> version.</p>", subtype="html")
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "The plain version."
    assert mail.attachments == ()


def test_html_only_mail_is_converted_to_text() -> None:
    msg = _mail()
    msg.set_content(
        "<html><head><title>Ignored</title><style>p {color: red}</style></head><body>"
        "<script>alert('x')</script><h1>Order&nbsp;shipped</h1>"
        "<p>Fish &amp; chips   are\n on <a href='https://example.com/t'>the way</a>.</p>"
        "<p></p><p></p><p></p><ul><li>one</li><li>two</li></ul></body></html>",
        subtype="html",
    )
    text = parse_mail(msg.as_bytes()).text
    assert text == (
        "# Order shipped\n\nFish & chips are on [the way](https://example.com/t).\n\n- one\n- two"
    )


def test_empty_plain_alternative_falls_back_to_html() -> None:
    msg = _mail()
    msg.set_content("  \n")
    msg.add_alternative("<p>Only here</p>", subtype="html")
    assert parse_mail(msg.as_bytes()).text == "Only here"


def test_deeply_nested_html_is_still_read() -> None:
    msg = _mail()
    msg.set_content("<div>" * 5000 + "Deep &amp; down" + "</div>" * 5000, subtype="html")
    assert parse_mail(msg.as_bytes()).text == "Deep & down"


def test_html_nested_past_the_parser_limit_keeps_its_text_in_order() -> None:
    msg = _mail()
    deep = "<table><tr><td>" * 300 + "inner" + "</td></tr></table>" * 300
    msg.set_content(f"<p>Before</p>{deep}<p>After &amp; all</p>", subtype="html")
    assert parse_mail(msg.as_bytes()).text == "Before\n\ninner\n\nAfter & all"


def test_html_declaring_another_charset_is_read_as_its_mime_charset() -> None:
    # Outlook writes an XML declaration and a <meta charset>; the MIME charset decides.
    msg = _mail()
    msg.set_content(
        '<?xml version="1.0" encoding="iso-8859-1"?><html><head>'
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
        "</head><body><p>Caf\u00e9 \u2013 na\u00efve \u4f60\u597d</p></body></html>",
        subtype="html",
        charset="utf-8",
    )
    assert parse_mail(msg.as_bytes()).text == "Caf\u00e9 \u2013 na\u00efve \u4f60\u597d"


def test_html_with_nul_and_broken_markup_is_read() -> None:
    msg = _mail()
    msg.set_content("<p>One\x00 <b>two<p>three</i></div> <a href=>four", subtype="html")
    words = [word.strip("*\ufffd") for word in parse_mail(msg.as_bytes()).text.split()]
    assert [word for word in words if word] == ["One", "two", "three", "four"]


def test_huge_html_is_cut_before_conversion() -> None:
    msg = _mail()
    msg.set_content("<p>word</p>" * 200_000, subtype="html")  # 2.2 MB
    start = time.perf_counter()
    mail = parse_mail(msg.as_bytes(), max_body_bytes=10_000)
    assert time.perf_counter() - start < 2
    assert mail.body_truncated
    assert mail.text.endswith("[message truncated: it was over 10000 bytes]")


def test_mail_with_only_attachments_says_so() -> None:
    msg = _mail()
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "[no readable text: this mail has only attachments]"
    assert [a.filename for a in mail.attachments] == ["a.pdf"]


def test_flowed_text_is_joined() -> None:
    raw = _raw(
        "From: a@example.com",
        "Content-Type: text/plain; charset=utf-8; format=flowed",
        "",
        "This line is soft ",
        "broken here.",
        "> quoted and ",
        "> continued",
        "-- ",
        "sig",
    )
    assert parse_mail(raw).text == (
        "This line is soft broken here.\n> quoted and continued\n-- \nsig"
    )


def test_unknown_charset_still_gives_text() -> None:
    raw = _raw("From: a@example.com", "Content-Type: text/plain; charset=x-unknown", "", "")
    raw += "caf\u00e9 cr\u00e8me".encode("latin-1")
    assert parse_mail(raw).text == "caf\u00e9 cr\u00e8me"


def test_declared_ascii_with_utf8_inside_is_read_as_utf8() -> None:
    raw = _raw("From: a@example.com", "Content-Type: text/plain; charset=us-ascii", "", "Grüße")
    assert parse_mail(raw).text == "Grüße"


# -- Limits -------------------------------------------------------------------------


def test_long_body_is_cut_at_a_character_boundary_with_a_note() -> None:
    msg = _mail()
    msg.set_content("é" * 100)  # 200 UTF-8 bytes
    mail = parse_mail(msg.as_bytes(), max_body_bytes=51)
    assert mail.body_truncated
    kept, note = mail.text.split("\n\n")
    assert kept == "é" * 25  # 50 bytes: the 26th character would be split
    assert note == "[message truncated: it was over 51 bytes]"


def test_body_at_the_limit_is_not_cut() -> None:
    msg = _mail()
    msg.set_content("x" * 100)
    mail = parse_mail(msg.as_bytes(), max_body_bytes=100)
    assert mail.text == "x" * 100
    assert not mail.body_truncated


def test_attachments_come_with_name_type_size_and_bytes() -> None:
    msg = _mail()
    msg.set_content("See attached.")
    msg.add_attachment(b"\x89PNG" + bytes(96), maintype="image", subtype="png", filename="a.png")
    msg.add_attachment(b"col1,col2\n", maintype="text", subtype="csv", filename="data.csv")
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "See attached."
    assert [(a.filename, a.mime_type, a.size) for a in mail.attachments] == [
        ("a.png", "image/png", 100),
        ("data.csv", "text/csv", 10),
    ]
    assert mail.attachments[1].data == b"col1,col2\n"
    assert all(a.rejected_reason is None for a in mail.attachments)


def test_oversized_attachment_is_rejected_without_its_data() -> None:
    msg = _mail()
    msg.set_content("Big file.")
    msg.add_attachment(bytes(2000), maintype="application", subtype="zip", filename="big.zip")
    msg.add_attachment(bytes(10), maintype="application", subtype="zip", filename="small.zip")
    big, small = parse_mail(msg.as_bytes(), max_attachment_bytes=1000).attachments
    assert (big.filename, big.size, big.data) == ("big.zip", 2000, None)
    assert big.rejected_reason == "over the 1000-byte attachment limit (2000 bytes)"
    assert small.data == bytes(10) and small.rejected_reason is None


def test_filenames_lose_directories_and_control_characters() -> None:
    msg = _mail()
    msg.set_content("Files.")
    for name in ("../../etc/passwd", "C:\\Users\\x\\evil.exe", "bad\x07name\u202egpj.exe", ".."):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=name)
    names = [a.filename for a in parse_mail(msg.as_bytes()).attachments]
    assert names == ["passwd", "evil.exe", "badnamegpj.exe", "attachment-4.bin"]


def test_files_without_a_name_get_one_from_their_type() -> None:
    raw = _raw(
        "From: a@example.com",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "Body.",
        "--b",
        "Content-Type: application/pdf",
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERg==",
        "--b--",
    )
    (attachment,) = parse_mail(raw).attachments
    assert (attachment.filename, attachment.size, attachment.data) == (
        "attachment-1.pdf",
        4,
        b"%PDF",
    )


def test_inline_image_with_a_name_is_an_attachment() -> None:
    msg = _mail()
    msg.set_content("Plain.")
    msg.add_alternative("<p>Look: <img src='cid:logo@x'></p>", subtype="html")
    msg.get_payload()[1].add_related(
        b"GIF89a", maintype="image", subtype="gif", cid="<logo@x>", filename="logo.gif"
    )
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "Plain."
    assert [(a.filename, a.size) for a in mail.attachments] == [("logo.gif", 6)]


def test_attached_message_is_an_eml_attachment() -> None:
    inner = _mail(Subject="Inner", Message_ID="<inner@example.com>")
    inner.set_content("Forwarded words.")
    msg = _mail()
    msg.set_content("Have a look.")
    msg.add_attachment(inner)
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "Have a look."
    (attachment,) = mail.attachments
    assert (attachment.filename, attachment.mime_type) == ("attachment-1.eml", "message/rfc822")
    assert attachment.data is not None and b"Forwarded words." in attachment.data
    assert parse_mail(attachment.data).subject == "Inner"


def test_rfc2231_and_encoded_word_filenames_are_decoded() -> None:
    raw = _raw(
        "From: a@example.com",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "Body.",
        "--b",
        "Content-Type: application/pdf",
        "Content-Disposition: attachment; filename*=utf-8''R%C3%A9sum%C3%A9.pdf",
        "",
        "x",
        "--b",
        'Content-Type: application/pdf; name="=?utf-8?B?0J/RgNC40LLQtdGCLnBkZg==?="',
        "",
        "x",
        "--b--",
    )
    assert [a.filename for a in parse_mail(raw).attachments] == ["Résumé.pdf", "Привет.pdf"]


# -- Headers ------------------------------------------------------------------------


def test_encoded_word_subject_and_names_are_decoded() -> None:
    raw = _raw(
        "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>",
        "To: =?iso-8859-1?q?Ren=E9?= <rene@example.com>, plain@example.com",
        'Cc: "Doe, Jane" <jane@example.com>',
        "Reply-To: Support <support@example.com>",
        "Subject: =?utf-8?b?8J+OiSBQYXJ0eQ==?=",
        " =?utf-8?q?_time?=\tnow",
        "",
        "Body.",
    )
    mail = parse_mail(raw)
    assert mail.subject == "🎉 Party time now"
    assert mail.sender == Address("Jörg Müller", "joerg@example.com")
    assert mail.to == (Address("René", "rene@example.com"), Address("", "plain@example.com"))
    assert mail.cc == (Address("Doe, Jane", "jane@example.com"),)
    assert mail.reply_to == Address("Support", "support@example.com")


def test_raw_utf8_headers_are_decoded() -> None:
    raw = _raw("From: Zoë <zoe@example.com>", "Subject: Ünïcödé  subject", "", "Body.")
    mail = parse_mail(raw)
    assert (mail.subject, mail.sender) == ("Ünïcödé subject", Address("Zoë", "zoe@example.com"))


def test_thread_headers_tolerate_folding_and_garbage() -> None:
    raw = _raw(
        "From: a@example.com",
        "Message-ID: <own@example.com>",
        "In-Reply-To: Your message of Monday <parent@example.com> (sent by Bob)",
        "References: <root@example.com> junk <mid",
        " dle@example.com>",
        "\t<root@example.com> <parent@example.com>",
        "",
        "Body.",
    )
    mail = parse_mail(raw)
    assert mail.message_id == "<own@example.com>" and not mail.message_id_is_substitute
    assert mail.in_reply_to == "<parent@example.com>"
    assert mail.references == ("<root@example.com>", "<middle@example.com>", "<parent@example.com>")


def test_missing_message_id_gets_a_stable_substitute() -> None:
    raw = _raw("From: a@example.com", "Subject: x", "", "Body.")
    mail = parse_mail(raw)
    assert mail.message_id_is_substitute
    assert mail.message_id.endswith("@spacebot.invalid>") and len(mail.message_id) == 51
    assert parse_mail(raw).message_id == mail.message_id
    assert parse_mail(raw + b"!").message_id != mail.message_id


def test_dates_are_timezone_aware_or_none() -> None:
    def date(value: str) -> datetime | None:
        return parse_mail(_raw("From: a@example.com", f"Date: {value}", "", "x")).date

    assert date("Mon, 01 Nov 2020 14:49:07 -0800") == datetime(
        2020, 11, 1, 14, 49, 7, tzinfo=timezone(timedelta(hours=-8))
    )
    assert date("Mon, 01 Nov 2020 14:49:07 -0000") == datetime(2020, 11, 1, 14, 49, 7, tzinfo=UTC)
    assert date("the day after tomorrow") is None
    assert date("Mon, 99 Foo 20200 99:99:99 +9999") is None


def test_x_loop_values_are_kept() -> None:
    raw = _raw("From: a@example.com", "X-Loop: bot@example.com", "X-Loop: other", "", "x")
    assert parse_mail(raw).x_loop == ("bot@example.com", "other")


# -- Malformed mail -----------------------------------------------------------------


def test_mail_without_header_body_separator_keeps_its_text() -> None:
    mail = parse_mail(b"From: a@example.com\nSubject: hi\nthis line is no header\nmore text\n")
    assert "more text" in mail.text
    assert "missing-header-body-separator" in mail.defects


def test_bare_cr_line_ends_are_read() -> None:
    mail = parse_mail(b"From: a@example.com\rSubject: Bare CR\r\rline one\rline two\r")
    assert (mail.subject, mail.text) == ("Bare CR", "line one\nline two")


def test_broken_base64_and_missing_boundaries_do_not_raise() -> None:
    raw = _raw(
        "From: a@example.com",
        'Content-Type: multipart/mixed; boundary="never-closed"',
        "",
        "--never-closed",
        "Content-Type: text/plain; charset=fakescii",
        "Content-Transfer-Encoding: base64",
        "",
        "SGVsbG8gd29ybGQ!!!*",
    )
    mail = parse_mail(raw)
    assert mail.text.startswith("Hello world")
    assert "close-boundary-not-found" in mail.defects


def test_deeply_nested_mail_is_read_in_bounded_time() -> None:
    depth = 3000
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    closing = "".join(f"\r\n--b{i}--" for i in reversed(range(depth)))
    raw = ("From: a@example.com\r\n" + opening + "\r\ndeep\r\n" * 20000 + closing).encode()
    start = time.perf_counter()
    mail = parse_mail(raw)
    assert time.perf_counter() - start < 2
    assert mail.text.startswith("[no readable text") and "too-complex" in mail.defects
    assert mail.sender == Address("", "a@example.com")


def test_deeply_nested_attached_messages_do_not_raise() -> None:
    nested = "Content-Type: message/rfc822\r\n\r\n" * 5000
    raw = ("From: a@example.com\r\nSubject: s\r\n" + nested + "\r\nbody").encode()
    mail = parse_mail(raw)
    assert mail.subject == "s" and mail.text.startswith("[no readable text")


# -- Base64 attachments (parsed without feeding their lines to the stdlib parser) ---------


def _with_attachment(text: str, data: bytes, *, mark_in_preamble: str = "") -> bytes:
    msg = _mail()
    msg.set_content(text)
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename="a.bin")
    if mark_in_preamble:
        msg.preamble = mark_in_preamble
    return msg.as_bytes()


def test_a_base64_attachment_comes_back_byte_for_byte() -> None:
    data = bytes(range(256)) * 200  # 51 KB: about 900 base64 lines
    mail = parse_mail(_with_attachment("See the file.", data))

    assert [a.data for a in mail.attachments] == [data]
    assert mail.text.strip() == "See the file."


def test_a_mail_that_names_our_placeholder_is_read_as_written() -> None:
    data = b"\x00\xff" * 30_000
    text = "SpacebotElidedBlob0x is what I typed."
    raw = _with_attachment(text, data, mark_in_preamble="SpacebotElidedBlob0x")

    mail = parse_mail(raw)

    assert [a.data for a in mail.attachments] == [data]
    assert mail.text.strip() == text


def test_crlf_and_lf_mails_give_the_same_attachment() -> None:
    data = bytes(range(256)) * 40
    lf = _with_attachment("Hi", data)
    crlf = lf.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    assert [a.data for a in parse_mail(crlf).attachments] == [data]
    assert [a.data for a in parse_mail(lf.replace(b"\r\n", b"\n")).attachments] == [data]
