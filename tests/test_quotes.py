"""The agent reads only what the sender wrote now: quoted history and signature split off.

Replies are written here as Gmail, Outlook (desktop and on the web), Apple Mail and
Thunderbird write them, in plain text and HTML, in English, German, French and Spanish,
top-posted and bottom-posted, and go through the real parser. The summary test prints
how many of each client's replies were split right.
"""

from __future__ import annotations

import html
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacebot_core.types import MessageContent
from spacebot_email.adapter import EmailAdapter
from spacebot_email.imap_responses import FetchedMail
from spacebot_email.normalize import to_inbound
from spacebot_email.parse import ParsedMail, parse_mail
from spacebot_email.quotes import ReplyParts, split_html_reply, split_reply
from spacebot_email.settings import EmailSettings, finalize

RECEIVED = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


# -- What each language's reply says ------------------------------------------------


@attrs.frozen
class Lang:
    """One language's reply, the message it answers, and its clients' header words."""

    code: str
    reply_prefix: str
    new: str
    original: str
    gmail_attr: str
    apple_attr: str
    thunderbird_attr: str
    outlook_separator: str
    outlook_fields: tuple[str, str, str, str]
    outlook_date: str
    iphone: str


LANGS = {
    "en": Lang(
        code="en",
        reply_prefix="Re",
        new="Thursday at 3pm works for me. I'll book the room on the second floor.",
        original="Hi Bob,\n\nCan we move the review to Thursday at 3pm?\n\nThanks,\nAlice",
        gmail_attr="On Tue, Mar 4, 2025 at 10:15 AM Alice Example <alice@example.com> wrote:",
        apple_attr="On Mar 4, 2025, at 10:15 AM, Alice Example <alice@example.com> wrote:",
        thunderbird_attr="On 3/4/25 10:15, Alice Example wrote:",
        outlook_separator="-----Original Message-----",
        outlook_fields=("From", "Sent", "To", "Subject"),
        outlook_date="Tuesday, March 4, 2025 10:15 AM",
        iphone="Sent from my iPhone",
    ),
    "de": Lang(
        code="de",
        reply_prefix="AW",
        new="Donnerstag um 15 Uhr passt mir. Ich buche den Raum im zweiten Stock.",
        original="Hallo Bob,\n\nkönnen wir das Review auf Donnerstag 15 Uhr verschieben?\n\n"
        "Danke,\nAlice",
        gmail_attr="Am Di., 4. März 2025 um 10:15 Uhr schrieb Alice Example <alice@example.com>:",
        apple_attr="Am 04.03.2025 um 10:15 schrieb Alice Example <alice@example.com>:",
        thunderbird_attr="Am 04.03.25 um 10:15 schrieb Alice Example:",
        outlook_separator="-----Ursprüngliche Nachricht-----",
        outlook_fields=("Von", "Gesendet", "An", "Betreff"),
        outlook_date="Dienstag, 4. März 2025 10:15",
        iphone="Von meinem iPhone gesendet",
    ),
    "fr": Lang(
        code="fr",
        reply_prefix="RE",
        new="Le jeudi à 15 h me convient. Je réserve la salle du deuxième étage.",
        original="Bonjour Bob,\n\nPeut-on décaler la revue à jeudi 15 h ?\n\nMerci,\nAlice",
        gmail_attr="Le mar. 4 mars 2025 à 10:15, Alice Example <alice@example.com> a écrit :",
        apple_attr="Le 4 mars 2025 à 10:15, Alice Example <alice@example.com> a écrit :",
        thunderbird_attr="Le 04/03/2025 à 10:15, Alice Example a écrit :",
        outlook_separator="-----Message d'origine-----",
        outlook_fields=("De\u00a0", "Envoyé\u00a0", "À\u00a0", "Objet\u00a0"),
        outlook_date="mardi 4 mars 2025 10:15",
        iphone="Envoyé de mon iPhone",
    ),
    "es": Lang(
        code="es",
        reply_prefix="RE",
        new="El jueves a las 15:00 me va bien. Reservo la sala del segundo piso.",
        original="Hola Bob:\n\n¿Podemos pasar la revisión al jueves a las 15:00?\n\n"
        "Gracias,\nAlice",
        gmail_attr="El mar, 4 mar 2025 a las 10:15, Alice Example (<alice@example.com>) escribió:",
        apple_attr="El 4 mar 2025, a las 10:15, Alice Example <alice@example.com> escribió:",
        thunderbird_attr="El 4/3/25 a las 10:15, Alice Example escribió:",
        outlook_separator="-----Mensaje original-----",
        outlook_fields=("De", "Enviado el", "Para", "Asunto"),
        outlook_date="martes, 4 de marzo de 2025 10:15",
        iphone="Enviado desde mi iPhone",
    ),
}
SIGNATURE = "-- \nBob Builder\nBuilder & Co, +1 555 0100"
# An Outlook user's sign-off has no delimiter: it is text, and stays in the new text.
SIGN_OFF = "\n\nBest regards,\nBob Builder"


# -- Building replies as clients write them -----------------------------------------


def _quoted(text: str) -> str:
    """``text`` quoted as clients do: ``> `` before each line, a bare ``>`` on blanks."""
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _wrapped(line: str, width: int = 72) -> str:
    """A long attribution wrapped at a space, as Gmail's plain text does."""
    if len(line) <= width:
        return line
    cut = line.rindex(" ", 0, width)
    return line[:cut] + "\n" + line[cut + 1 :]


def _html_lines(text: str) -> str:
    """Plain text as HTML with ``<br>`` line breaks."""
    return "<br>".join(html.escape(line) for line in text.split("\n"))


def _outlook_block(lang: Lang, *, bold: bool = False) -> str:
    """Outlook's From/Sent/To/Subject block (plain, or with bold labels in HTML)."""
    values = (
        "Alice Example <alice@example.com>",
        lang.outlook_date,
        "Bob Builder <bob@example.com>",
        "Review",
    )
    if not bold:
        return "\n".join(
            f"{label}: {value}" for label, value in zip(lang.outlook_fields, values, strict=True)
        )
    return "<br>".join(
        f"<b>{label}:</b> {html.escape(value)}"
        for label, value in zip(lang.outlook_fields, values, strict=True)
    )


def gmail_plain(lang: Lang) -> str:
    """Gmail, top-posted, with its ``-- `` signature, the attribution wrapped."""
    return f"{lang.new}\n\n{SIGNATURE}\n\n{_wrapped(lang.gmail_attr)}\n\n{_quoted(lang.original)}\n"


def gmail_plain_bottom(lang: Lang) -> str:
    """Gmail with the trimmed content expanded and the answer written below it."""
    return f"{lang.gmail_attr}\n\n{_quoted(lang.original)}\n\n{lang.new}\n"


def gmail_html(lang: Lang) -> str:
    """Gmail's HTML: ``gmail_signature`` and ``gmail_quote`` with its ``gmail_attr``."""
    return (
        f'<div dir="ltr">{html.escape(lang.new)}<br clear="all"><div><br></div>'
        '<span class="gmail_signature_prefix">-- </span><br><div dir="ltr" '
        'class="gmail_signature" data-smartmail="gmail_signature">Bob Builder<br>'
        'Builder &amp; Co, +1 555 0100</div></div><br><div class="gmail_quote '
        'gmail_quote_container"><div dir="ltr" class="gmail_attr">'
        f'{html.escape(lang.gmail_attr)}<br></div><blockquote class="gmail_quote" '
        'style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);'
        f'padding-left:1ex"><div dir="ltr">{_html_lines(lang.original)}</div>'
        "</blockquote></div>\n"
    )


def outlook_desktop_plain(lang: Lang) -> str:
    """Outlook desktop composing plain text: its separator, then the header block."""
    return (
        f"{lang.new}{SIGN_OFF}\n\n{lang.outlook_separator}\n{_outlook_block(lang)}\n\n"
        f"{lang.original}\n"
    )


def outlook_desktop_html(lang: Lang) -> str:
    """Outlook desktop's HTML: the header block in a div with a thin top border."""
    return (
        '<html><head><meta name="Generator" content="Microsoft Word 15 (filtered medium)">'
        '</head><body lang="EN-US"><div class="WordSection1"><p class="MsoNormal">'
        f'{html.escape(lang.new)}<o:p></o:p></p><p class="MsoNormal">{_html_lines(SIGN_OFF)}'
        '</p><p class="MsoNormal"><o:p>&nbsp;</o:p></p><div><div style="border:none;'
        'border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal">'
        f"{_outlook_block(lang, bold=True)}<o:p></o:p></p></div></div>"
        f'<p class="MsoNormal"><o:p>&nbsp;</o:p></p><p class="MsoNormal">'
        f"{_html_lines(lang.original)}<o:p></o:p></p></div></body></html>\n"
    )


def outlook_web_plain(lang: Lang) -> str:
    """Outlook on the web: a rule of underscores, then the header block."""
    return (
        f"{lang.new}{SIGN_OFF}\n\n________________________________\n{_outlook_block(lang)}\n\n"
        f"{lang.original}\n"
    )


def outlook_web_html(lang: Lang) -> str:
    """Outlook on the web's HTML: ``appendonsend``, a rule, ``divRplyFwdMsg``."""
    return (
        '<html><body><div class="elementToProof" style="font-family: Aptos, sans-serif;">'
        f"{html.escape(lang.new)}</div><div>{_html_lines(SIGN_OFF)}</div>"
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" '
        'tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" '
        f'style="font-size:11pt" color="#000000">{_outlook_block(lang, bold=True)}</font>'
        f"<div>&nbsp;</div></div><div>{_html_lines(lang.original)}</div></body></html>\n"
    )


def apple_plain(lang: Lang) -> str:
    """Apple Mail on iPhone: device line, then the attribution inside the quote."""
    return f"{lang.new}\n\n{lang.iphone}\n\n{_quoted(lang.apple_attr + chr(10) + lang.original)}\n"


def apple_html(lang: Lang) -> str:
    """Apple Mail on the Mac: the attribution inside ``<blockquote type="cite">``."""
    return (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8">'
        f'</head><body style="overflow-wrap: break-word;">{html.escape(lang.new)}<br><div>'
        '<br><blockquote type="cite"><div>'
        f"{html.escape(lang.apple_attr)}</div><br "
        'class="Apple-interchange-newline"><div><div>'
        f"{_html_lines(lang.original)}</div></div></blockquote></div><br></body></html>\n"
    )


def apple_ios_html(lang: Lang) -> str:
    """Apple Mail on iPhone: the attribution and the message in two blockquotes."""
    return (
        f'<html><body dir="auto">{html.escape(lang.new)}<br><br id="lineBreakAtBeginning'
        f'OfSignature"><div dir="ltr">{html.escape(lang.iphone)}</div><div dir="ltr"><br>'
        f'<blockquote type="cite">{html.escape(lang.apple_attr)}<br><br></blockquote></div>'
        f'<blockquote type="cite"><div dir="ltr">{_html_lines(lang.original)}</div>'
        "</blockquote></body></html>\n"
    )


def thunderbird_plain(lang: Lang) -> str:
    """Thunderbird, top-posted, signature above the quote."""
    return f"{lang.new}\n\n{SIGNATURE}\n\n{lang.thunderbird_attr}\n{_quoted(lang.original)}\n"


def thunderbird_plain_bottom(lang: Lang) -> str:
    """Thunderbird's default: the answer below the quote, then the signature."""
    return f"{lang.thunderbird_attr}\n{_quoted(lang.original)}\n\n{lang.new}\n\n{SIGNATURE}\n"


def _moz_quote(lang: Lang) -> str:
    return (
        f'<div class="moz-cite-prefix">{html.escape(lang.thunderbird_attr)}<br></div>'
        '<blockquote type="cite" cite="mid:review-1@example.com">'
        f"<p>{_html_lines(lang.original)}</p></blockquote>"
    )


_MOZ_SIGNATURE = (
    '<pre class="moz-signature" cols="72">-- \nBob Builder\nBuilder &amp; Co, +1 555 0100</pre>'
)


def thunderbird_html(lang: Lang) -> str:
    """Thunderbird's HTML, top-posted: ``moz-cite-prefix`` and a cited blockquote."""
    return (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
        f"</head><body><p>{html.escape(lang.new)}</p>{_MOZ_SIGNATURE}{_moz_quote(lang)}"
        "</body></html>\n"
    )


def thunderbird_html_bottom(lang: Lang) -> str:
    """Thunderbird's HTML, bottom-posted: the answer and signature after the quote."""
    return (
        "<html><head></head><body>"
        f"{_moz_quote(lang)}<p>{html.escape(lang.new)}</p>{_MOZ_SIGNATURE}</body></html>\n"
    )


@attrs.frozen
class Case:
    """One reply as a client writes it, and what the agent should read of it."""

    client: str
    lang: str
    form: str  # "plain" or "html"
    posting: str  # "top" or "bottom"
    body: str
    new: str
    signature: bool

    @property
    def id(self) -> str:
        """A readable test id."""
        return f"{self.client}-{self.lang}-{self.form}-{self.posting}".replace(" ", "_")

    def raw(self) -> bytes:
        """The whole mail, as it would arrive."""
        msg = EmailMessage()
        msg["From"] = "Bob Builder <bob@example.com>"
        msg["To"] = "Alice Example <alice@example.com>"
        msg["Subject"] = f"{LANGS[self.lang].reply_prefix}: Review"
        msg["Message-ID"] = "<review-2@example.com>"
        msg["In-Reply-To"] = "<review-1@example.com>"
        msg.set_content(self.body, subtype=self.form)
        return msg.as_bytes()


_TEMPLATES = (
    # client, form, posting, builder, expected new text, signature split
    ("Gmail", "plain", "top", gmail_plain, lambda lang: lang.new, True),
    ("Gmail", "plain", "bottom", gmail_plain_bottom, lambda lang: lang.new, False),
    ("Gmail", "html", "top", gmail_html, lambda lang: lang.new, True),
    ("Outlook desktop", "plain", "top", outlook_desktop_plain, lambda g: g.new + SIGN_OFF, False),
    ("Outlook desktop", "html", "top", outlook_desktop_html, lambda g: g.new + SIGN_OFF, False),
    ("Outlook on the web", "plain", "top", outlook_web_plain, lambda g: g.new + SIGN_OFF, False),
    ("Outlook on the web", "html", "top", outlook_web_html, lambda g: g.new + SIGN_OFF, False),
    ("Apple Mail", "plain", "top", apple_plain, lambda lang: lang.new, True),
    ("Apple Mail", "html", "top", apple_html, lambda lang: lang.new, False),
    ("Apple Mail iOS", "html", "top", apple_ios_html, lambda lang: lang.new, True),
    ("Thunderbird", "plain", "top", thunderbird_plain, lambda lang: lang.new, True),
    ("Thunderbird", "plain", "bottom", thunderbird_plain_bottom, lambda lang: lang.new, True),
    ("Thunderbird", "html", "top", thunderbird_html, lambda lang: lang.new, True),
    ("Thunderbird", "html", "bottom", thunderbird_html_bottom, lambda lang: lang.new, True),
)
CASES = [
    Case(client, lang.code, form, posting, build(lang), expected(lang), signature)
    for client, form, posting, build, expected, signature in _TEMPLATES
    for lang in LANGS.values()
]


def _squash(text: str) -> str:
    return " ".join(text.split())


def _split_right(case: Case, mail: ParsedMail) -> list[str]:
    """What is wrong with how ``mail`` was split (nothing: split right)."""
    problems = []
    original_line = LANGS[case.lang].original.split("\n")[2]
    if _squash(mail.new_text) != _squash(case.new):
        problems.append(f"new text is {mail.new_text!r}")
    if original_line not in mail.quoted_text:
        problems.append(f"the quoted message is not in quoted_text: {mail.quoted_text!r}")
    if case.signature and "Bob Builder" not in mail.signature and "iPhone" not in mail.signature:
        problems.append(f"signature not split: {mail.signature!r}")
    if not case.signature and mail.signature:
        problems.append(f"text taken as signature: {mail.signature!r}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_reply_is_split_into_new_text_quote_and_signature(case: Case) -> None:
    mail = parse_mail(case.raw())
    assert _split_right(case, mail) == []
    assert original_kept_whole(mail)


def original_kept_whole(mail: ParsedMail) -> bool:
    """The full text keeps everything: the new text, the quote and the signature."""
    return all(_squash(part) in _squash(mail.text) for part in (mail.quoted_text,) if part)


def test_split_right_per_client_template(capsys: pytest.CaptureFixture[str]) -> None:
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for case in CASES:
        total[case.client] += 1
        right[case.client] += not _split_right(case, parse_mail(case.raw()))
    with capsys.disabled():
        sys.stdout.write("\nreplies split right, per client template (EN/DE/FR/ES):\n")
        for client in total:
            sys.stdout.write(f"  {client:20} {right[client]:3} / {total[client]}\n")
        sys.stdout.write(f"  {'all':20} {sum(right.values()):3} / {len(CASES)}\n")
    assert right == total


# -- Rules beyond the templates -----------------------------------------------------


def test_agent_reads_new_text_and_metadata_keeps_the_rest() -> None:
    case = next(c for c in CASES if c.id == "Gmail-en-plain-top")
    mail = parse_mail(case.raw())
    message = to_inbound(mail, runtime_key="email", folder="INBOX", uid=1, received_at=RECEIVED)
    assert message.content == MessageContent.Text(text=LANGS["en"].new)
    metadata = message.metadata
    assert json.loads(json.dumps(metadata)) == metadata
    assert metadata["full_text"] == mail.text
    assert metadata["quoted_text"].startswith("On Tue, Mar 4, 2025")
    assert metadata["signature"] == SIGNATURE


def test_mail_without_quote_or_signature_adds_no_metadata() -> None:
    mail = parse_mail(b"From: a@example.com\r\nSubject: hi\r\n\r\nJust a question.\r\n")
    message = to_inbound(mail, runtime_key="email", folder="INBOX", uid=1, received_at=RECEIVED)
    assert mail.new_text == mail.text == "Just a question."
    assert not {"full_text", "quoted_text", "signature"} & set(message.metadata)


def test_strip_quoted_false_leaves_the_text_alone() -> None:
    raw = next(c for c in CASES if c.id == "Thunderbird-de-plain-bottom").raw()
    mail = parse_mail(raw, strip_quoted=False)
    assert mail.new_text == mail.text and (mail.quoted_text, mail.signature) == ("", "")
    split = parse_mail(raw)
    message = to_inbound(
        split, runtime_key="email", folder="INBOX", uid=1, received_at=RECEIVED, strip_quoted=False
    )
    assert message.content == MessageContent.Text(text=split.text)
    assert "full_text" not in message.metadata


def test_adapter_follows_the_strip_quoted_setting() -> None:
    raw = next(c for c in CASES if c.id == "Outlook_on_the_web-fr-html-top").raw()
    fetched = FetchedMail("INBOX", 1, 7, (), raw, size=len(raw))
    texts = []
    for strip in (True, False):
        settings_ = finalize(
            EmailSettings(
                imap_host="localhost",
                smtp_host="localhost",
                imap_username="bot@example.com",
                imap_password="p",
                strip_quoted=strip,
            ),
            "email",
        )
        message = EmailAdapter("email", settings_).spacebot_normalize_inbound(fetched)
        assert isinstance(message.content, MessageContent.Text)
        texts.append(message.content.text)
    assert _squash(texts[0]) == _squash(LANGS["fr"].new + SIGN_OFF)
    assert "Peut-on décaler" in texts[1] and texts[1].startswith(LANGS["fr"].new)


def test_strip_quoted_is_a_config_key(tmp_path) -> None:
    from spacebot_core.config import load_config
    from spacebot_core.plugins import load_plugins

    path = tmp_path / "config.toml"
    path.write_text(
        '[messaging.email]\nimap_host = "imap.example.com"\nsmtp_host = "smtp.example.com"\n'
        'imap_username = "bot@example.com"\nimap_password = "p"\nstrip_quoted = false\n'
    )
    host = load_plugins()
    [instance] = load_config(path, host.adapter_classes(), host.agent_classes()).instances
    assert instance.settings.strip_quoted is False
    assert EmailSettings().strip_quoted is True


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (  # Gmail
            "Fwd: Review",
            "---------- Forwarded message ---------\nFrom: Alice Example <alice@example.com>\n"
            "Date: Tue, Mar 4, 2025 at 10:15 AM\nSubject: Review\nTo: <bob@example.com>\n\n"
            "Can we move the review?\n",
        ),
        (  # Apple Mail
            "Fwd: Review",
            "Begin forwarded message:\n\nFrom: Alice Example <alice@example.com>\n"
            "Subject: Review\nDate: March 4, 2025 at 10:15:00 AM GMT+1\nTo: Bob <bob@example.com>"
            "\n\nCan we move the review?\n",
        ),
        (  # Thunderbird
            "Fwd: Review",
            "-------- Forwarded Message --------\nSubject: \tReview\nDate: \tTue, 4 Mar 2025\n"
            "From: \tAlice Example <alice@example.com>\nTo: \tbob@example.com\n\n"
            "Can we move the review?\n",
        ),
        (  # Outlook: a forward reads like a reply; the subject tells them apart
            "FW: Review",
            "________________________________\nFrom: Alice Example <alice@example.com>\n"
            "Sent: Tuesday, March 4, 2025 10:15 AM\nTo: Bob\nSubject: Review\n\n"
            "Can we move the review?\n",
        ),
        (  # a mail that is all quote
            "Re: Review",
            "> Can we move the review?\n> Alice\n",
        ),
    ],
    ids=["gmail", "apple", "thunderbird", "outlook", "all-quote"],
)
def test_forward_without_comment_keeps_its_full_text(subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = "bob@example.com"
    msg["Subject"] = subject
    msg.set_content(body)
    mail = parse_mail(msg.as_bytes())
    assert mail.new_text == mail.text and "Can we move the review?" in mail.new_text
    assert mail.quoted_text == ""


def test_forward_with_comment_keeps_the_forwarded_message() -> None:
    text = (
        "Could you answer this customer?\n\n---------- Forwarded message ---------\n"
        "From: Carol <carol@example.org>\nDate: Tue, Mar 4, 2025\nSubject: Order 7\n"
        "To: <bob@example.com>\n\nWhere is my order?\n\nOn Mon, Mar 3, 2025 at 9:00 AM "
        "Shop <shop@example.com> wrote:\n> Your order has shipped.\n"
    )
    assert split_reply(text) == ReplyParts(new=text)


def test_forward_html_keeps_the_forwarded_message() -> None:
    body = (
        '<div dir="ltr">Could you answer this?<br><br><div class="gmail_quote"><div dir="ltr" '
        'class="gmail_attr">---------- Forwarded message ---------<br>From: Carol &lt;'
        "carol@example.org&gt;<br>Date: Tue, Mar 4, 2025<br>Subject: Order 7<br></div><br>"
        "<div>Where is my order?</div></div></div>"
    )
    assert split_html_reply(body) == (body, "")


def test_interleaved_answers_keep_the_lines_they_answer() -> None:
    text = (
        "Hi Alice,\n\nOn 3/4/25 10:15, Alice Example wrote:\n> Can we meet on Thursday?\n\n"
        "Yes, at 3pm.\n\n> And can you bring the slides?\n\nI will.\n\n> Thanks,\n> Alice\n"
    )
    parts = split_reply(text)
    assert parts.new == text[: text.index("\n\n> Thanks")]
    assert parts.quoted == "> Thanks,\n> Alice"


def test_bottom_posted_reply_below_a_long_quote() -> None:
    quote = "\n".join(f"> line {n} of the earlier message" for n in range(200))
    parts = split_reply(f"Alice Example wrote:\n{quote}\n\nAgreed, ship it.\n")
    assert parts.new == "Agreed, ship it."
    assert parts.quoted.startswith("Alice Example wrote:\n> line 0")


@pytest.mark.parametrize(
    ("text", "new", "signature"),
    [
        ("See you then.\n\n-- \nBob\nAcme", "See you then.", "-- \nBob\nAcme"),
        ("See you then.\n\nSent from my iPhone", "See you then.", "Sent from my iPhone"),
        ("Bis dann.\n\nVon meinem iPhone gesendet", "Bis dann.", "Von meinem iPhone gesendet"),
        ("À jeudi.\n\nEnvoyé de mon iPad", "À jeudi.", "Envoyé de mon iPad"),
        (
            "Hasta el jueves.\nEnviado desde mi iPhone",
            "Hasta el jueves.",
            "Enviado desde mi iPhone",
        ),
        ("See you.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "See you.", None),
        ("Thanks!\n\n--\nBob Builder\nAcme", "Thanks!", "--\nBob Builder\nAcme"),
    ],
)
def test_signature_is_split(text: str, new: str, signature: str | None) -> None:
    parts = split_reply(text)
    assert parts.new == new
    assert parts.signature == (signature or text[len(new) :].strip())


@pytest.mark.parametrize(
    "text",
    [
        "Thanks for the help.\n\nBest regards,\nAlice Example\nHead of Operations",
        "The build prints:\n--\n" + "\n".join(f"step {n} done" for n in range(15)),
        "I was sent from my office to the site; the report follows.",
        "On Monday the team meets.\nEl jueves a las 15:00 me va bien.\nLe jeudi me convient.",
        "Meeting notes:\nFrom: the design team\nTo: everyone\nRe: the launch",
        "Hello\n>From the start we agreed on this.\nBye",
    ],
    ids=["sign-off", "long-after-dashes", "sent-from-in-text", "openers", "memo", "mbox-from"],
)
def test_real_text_is_never_eaten(text: str) -> None:
    assert split_reply(text) == ReplyParts(new=text)


def test_outlook_block_of_an_embedded_raw_message_is_not_a_quote() -> None:
    text = (
        "Original message follows.\n\nMIME-Version: 1.0\nFrom: a@example.com\n"
        "To: b@example.com\nSubject: Hey\nContent-Type: text/plain\n\nHey there"
    )
    assert split_reply(text) == ReplyParts(new=text)


def test_new_text_is_found_past_the_body_limit() -> None:
    quote = "\n".join(f"> {'quoted words ' * 6}{n}" for n in range(300))
    msg = EmailMessage()
    msg["From"] = "bob@example.com"
    msg["Subject"] = "Re: Review"
    msg.set_content(f"Alice Example wrote:\n{quote}\n\nThe answer is at the bottom.\n")
    mail = parse_mail(msg.as_bytes(), max_body_bytes=10_000)
    assert mail.body_truncated
    assert mail.new_text == "The answer is at the bottom."
    assert len(mail.quoted_text.encode()) < 10_200


def test_deeply_nested_html_is_left_whole() -> None:
    body = "<div>" * 5000 + '<blockquote type="cite">quoted</blockquote>' + "</div>" * 5000
    new, quoted = split_html_reply(body)  # never raises, whatever it finds
    assert isinstance(new, str) and isinstance(quoted, str)
    mail = parse_mail(b"From: a@example.com\r\nContent-Type: text/html\r\n\r\nnew" + body.encode())
    assert "new" in mail.new_text


@pytest.mark.parametrize(
    "text",
    [
        "> a\n" + "\n" * 200_000 + "> b\nnew",
        "x\n" + "--\n" * 200_000,
        "x\n" + "--\n\n\n\n\n" * 40_000,
        ("x" * 150 + " wrote:\n") * 20_000,
        "From: a\nSent: b\n" * 100_000,
        ("_" * 30 + "\n\n") * 100_000,
        ">From x\n\n" * 100_000,
    ],
    ids=["blank-lines", "dashes", "dashes-apart", "wrote", "from-sent", "rules", "mbox"],
)
def test_hostile_text_splits_in_linear_time(text: str) -> None:
    # About 400 KB: the most the parser hands over (four times the body limit).
    start = time.perf_counter()
    split_reply(text)
    assert time.perf_counter() - start < 3


def test_hostile_html_splits_in_bounded_time() -> None:
    start = time.perf_counter()
    split_html_reply('<div class="gmail_quote">q</div><p>t</p>' * 10_000)
    split_html_reply('<blockquote type="cite">' * 10_000 + "x")
    assert time.perf_counter() - start < 5


_LINES = st.sampled_from(
    [
        "",
        "Hello there",
        "> quoted line",
        ">> deeper",
        "-- ",
        "--",
        "Sent from my iPhone",
        "On Tue, Mar 4, 2025 at 10:15 AM Alice <a@example.com> wrote:",
        "Alice wrote:",
        "-----Original Message-----",
        "From: Alice <a@example.com>",
        "Sent: Tuesday",
        "To: Bob",
        "Subject: Hi",
        "________________________________",
        "---------- Forwarded message ---------",
        "Am 04.03.25 um 10:15 schrieb Alice:",
        "```",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=30))
def test_every_line_ends_up_in_exactly_one_part(lines: list[str]) -> None:
    text = "\n".join(lines)
    parts = split_reply(text)
    if not parts.is_split:
        assert parts.new == text
        return
    assert parts.new.strip()
    kept = [line for part in attrs.astuple(parts) for line in part.split("\n") if line.strip()]
    assert sorted(kept) == sorted(line for line in lines if line.strip())
