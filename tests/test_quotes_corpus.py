"""New text only, measured: on the real-world corpus and on a 20-message thread.

The corpus (``tests/corpus``) holds few human replies, so three measures are printed:
how many corpus mails had a quote or a signature split off at all; how many of a
hand-labelled sample of corpus mails (replies, forwards, signed mails, and mails that
only look like them) were split right, each label written by reading the mail; and the
characters an agent reads over a 20-message thread in which every reply quotes the
whole history, with and without stripping.
"""

from __future__ import annotations

import html
import sys
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import attrs
import pytest

from spacebot_core.types import MessageContent
from spacebot_email.html_text import html_to_text
from spacebot_email.normalize import to_inbound
from spacebot_email.parse import ParsedMail, parse_mail

CORPUS = Path(__file__).parent / "corpus"
ALL_MAILS = sorted(
    path for path in CORPUS.rglob("*") if path.suffix in {".eml", ".raw", ".txt"} and path.is_file()
)
RECEIVED = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def _squash(text: str) -> str:
    return " ".join(text.split())


# -- The whole corpus -------------------------------------------------------------------


def test_corpus_splits_keep_every_word(capsys: pytest.CaptureFixture[str]) -> None:
    quoted: Counter[str] = Counter()
    signed: Counter[str] = Counter()
    for path in ALL_MAILS:
        mail = parse_mail(path.read_bytes())
        source = path.relative_to(CORPUS).parts[0]
        assert mail.new_text.strip(), path
        if not (mail.quoted_text or mail.signature):
            assert mail.new_text == mail.text, path
            continue
        quoted[source] += bool(mail.quoted_text)
        signed[source] += bool(mail.signature)
        if not mail.body_truncated:
            # Nothing is lost: the parts together are the full text.
            parts = (mail.new_text, mail.quoted_text, mail.signature)
            assert all(_squash(part) in _squash(mail.text) for part in parts), path
            assert len(_squash(" ".join(parts))) >= len(_squash(mail.text)), path
    with capsys.disabled():
        sys.stdout.write(f"\ncorpus: {len(ALL_MAILS)} mails; quote split off / signature:\n")
        for source in sorted(set(quoted) | set(signed)):
            sys.stdout.write(f"  {source:24} {quoted[source]:4} / {signed[source]:3}\n")
        sys.stdout.write(f"  {'all':24} {sum(quoted.values()):4} / {sum(signed.values()):3}\n")


# -- A hand-labelled sample ---------------------------------------------------------


@attrs.frozen
class Label:
    """What the agent should read of one corpus mail, written by reading it."""

    path: str
    new: str  # the expected new text, compared without regard to whitespace
    quoted: str = ""  # how the quoted part starts ("" when nothing is quoted)
    signature: str = ""  # how the signature starts ("" when none)
    why: str = ""


_SERVER_QUESTION = (
    "Isn't that the case for almost every other server you care to mention? What about "
    "switching to an EUID of nobody early in the request processing stage? ---/dev/il"
)
LABELS = [
    # Replies with quoted history.
    Label(
        "flanker/from-encoding.eml",
        _SERVER_QUESTION,
        quoted="Marc Slemko wrote:\n> If you have a real uid",
        why="bottom-posted below a bare 'X wrote:'; '---/dev/il' is a sign-off, kept",
    ),
    Label(
        "django-helpdesk/forwarded-message.eml",
        "This is email body",
        quoted="-----Original Message-----\nFrom: GitHub",
        why="Outlook's separator and header block, subject without FW:",
    ),
    # Replies that quote nothing: the whole text is new.
    Label("cpython-email/msg_32.txt", "Some message."),
    Label("cpython-email/msg_33.txt", "part 1 part 2"),
    Label("imap_tools/plain_emails/raw_email_reply.eml", "Message body"),
    Label("imap_tools/rfc2822/example06.eml", "This is a reply to your hello."),
    Label("imap_tools/rfc2822/example07.eml", "This is a reply to your reply."),
    Label("imap_tools/rfc2822/example14.eml", "Hello"),
    Label(
        "imap_tools/mime_emails/sig_only_email.eml",
        "This is random text, not what has been signed below, ie, this sig email is not "
        "signed correctly.",
    ),
    Label("django-mailbox/message_with_image_jpg_mimetype.eml", "Hello, World"),
    Label(
        "imap_tools/plain_emails/raw_email_with_partially_quoted_subject.eml",
        "대부분의 마찬가지로, 우리는 하나님을 믿습니다. 제 이름은 Jamis입니다.",
    ),
    Label("sisimai-set-of-emails/maildir/bsd/rfc3834-03.eml", "I'm only sleeping."),
    # Signatures.
    Label("flanker/mailgun-pic.eml", "Мейлган! Хахах!", signature="-- \nRegards,\nAlex"),  # noqa: RUF001
    Label(
        "flanker/relative.eml",
        "This is html and text message, thanks",
        signature="-- \nRegards,\nBob",
    ),
    Label("imap_tools/multi_charset/japanese.eml", "かきくえこ", signature="-- \nhttp://lindsaar"),
    Label(
        "imap_tools/attachment_8bit.eml",
        "SCR / S19 07FEB wat",
        signature="-- \nотдел расписания",  # noqa: RUF001
    ),
    Label(
        "enmime/testdata/mail/ctype-bug.raw",
        "",  # long: checked by its ends below
        signature="-- \nCan we help?",
    ),
    Label(
        "stalwart-mail-parser/thirdparty/015.eml",
        "",
        signature="--\nJonas Sterr",
        why="a bare '--' (no trailing space) with five lines after it",
    ),
    # Forwards keep the forwarded message: it is news to the agent.
    Label("flanker/multi-received-headers.eml", "", why="Gmail forward of a forward"),
    Label("imap_tools/mime_emails/raw_email2.eml", "", why="forward with a comment"),
    Label("django-helpdesk/utf-nondecodable.eml", "", why="Thunderbird forward"),
    Label("imap_tools/attachment_emails/attachment_with_encoded_name.eml", ""),
    Label("django-mailbox/message_with_long_content.eml", "", why="Fwd: subject"),
    # Mails that only look like replies or signed mail.
    Label(
        "imap_tools/mime_emails/two_from_in_message.eml",
        "",
        why="'* From Hotmail you get ...' is a list, not a header block",
    ),
    Label("cpython-email/msg_16.txt", "", why="a bounce citing indented headers"),
    Label(
        "imap_tools/error_emails/content_transfer_encoding_text-html.eml",
        "",
        why="'Re:' spam with a '-----' rule above its footer",
    ),
    Label(
        "stalwart-mail-parser/thirdparty/012.eml",
        "",
        why="an embedded raw message's headers are not Outlook's block",
    ),
]
# Long mails: the expected new text by how it starts and ends.
_ENDS = {
    "enmime/testdata/mail/ctype-bug.raw": ("What's next?", "All of us at Papertrail"),
    "stalwart-mail-parser/thirdparty/015.eml": ("Hallo Stoiko,", "Beste Grüße"),
}


def _split_right(label: Label, mail: ParsedMail) -> list[str]:
    """What is wrong with how ``mail`` was split (nothing: split right)."""
    problems = []
    whole = not (label.quoted or label.signature)
    if whole and mail.new_text != mail.text:
        problems.append(f"split, but should not be: new text {mail.new_text[:80]!r}")
    if label.new and _squash(mail.new_text) != _squash(label.new):
        problems.append(f"new text is {mail.new_text!r}")
    if label.path in _ENDS:
        start, end = _ENDS[label.path]
        if not (mail.new_text.startswith(start) and mail.new_text.endswith(end)):
            problems.append(f"new text runs {mail.new_text[:30]!r} ... {mail.new_text[-30:]!r}")
    if not mail.quoted_text.startswith(label.quoted) or bool(mail.quoted_text) != bool(
        label.quoted
    ):
        problems.append(f"quoted text is {mail.quoted_text[:80]!r}")
    if not mail.signature.startswith(label.signature) or bool(mail.signature) != bool(
        label.signature
    ):
        problems.append(f"signature is {mail.signature[:80]!r}")
    return problems


@pytest.mark.parametrize("label", LABELS, ids=lambda label: label.path)
def test_labelled_corpus_mail_is_split_right(label: Label) -> None:
    mail = parse_mail((CORPUS / label.path).read_bytes())
    assert _split_right(label, mail) == [], label.why


def test_labelled_sample_split_right_count(capsys: pytest.CaptureFixture[str]) -> None:
    wrong = {}
    for label in LABELS:
        problems = _split_right(label, parse_mail((CORPUS / label.path).read_bytes()))
        if problems:
            wrong[label.path] = problems
    with capsys.disabled():
        sys.stdout.write(
            f"\nhand-labelled corpus sample: {len(LABELS) - len(wrong)} / {len(LABELS)} "
            "split right\n"
        )
    assert len(LABELS) >= 20
    assert wrong == {}


# -- A 20-message thread --------------------------------------------------------------


_TOPICS = [
    "the venue for the offsite",
    "the catering budget",
    "who presents the roadmap",
    "the projector in room B",
    "travel for the Berlin team",
    "the agenda's first draft",
    "badges for the guests",
    "the dinner reservation",
    "the Wi-Fi password for guests",
    "the slides' template",
]


def _new_text(number: int) -> str:
    """The n-th message's own text: a few sentences, as people write them."""
    topic = _TOPICS[number % len(_TOPICS)]
    return (
        f"About {topic}: I checked with the team this morning (note {number}). "
        "We can go ahead as discussed, but please confirm by Friday so I can tell the "
        "others. If anything changes on your side, reply to this mail."
    )


def _gmail_reply(number: int, history: str) -> EmailMessage:
    """Alice answers in Gmail: plain text, the whole history quoted with ``>``."""
    msg = EmailMessage()
    msg.set_content(
        f"{_new_text(number)}\n\nOn Tue, Mar 4, 2025 at 10:{number:02d} AM Bob Builder "
        f"<bob@example.com> wrote:\n\n"
        + "\n".join(f"> {line}" if line else ">" for line in history.split("\n"))
        + "\n"
    )
    return msg


def _outlook_reply(number: int, history: str) -> EmailMessage:
    """Bob answers in Outlook: HTML only, the history below the bordered header block."""
    msg = EmailMessage()
    history_html = "<br>".join(html.escape(line) for line in history.split("\n"))
    msg.set_content(
        f'<html><body><p class="MsoNormal">{html.escape(_new_text(number))}</p>'
        '<div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm '
        '0cm 0cm"><p class="MsoNormal"><b>From:</b> Alice Example &lt;alice@example.com'
        f"&gt;<br><b>Sent:</b> Tuesday, March 4, 2025 10:{number:02d} AM<br><b>To:</b> "
        "Bob Builder &lt;bob@example.com&gt;<br><b>Subject:</b> Re: Offsite</p></div></div>"
        f'<p class="MsoNormal">{history_html}</p></body></html>',
        subtype="html",
    )
    return msg


def _thread(length: int) -> list[bytes]:
    """A thread in which each reply quotes all of the one before, as clients do."""
    raws: list[bytes] = []
    history = ""
    for number in range(1, length + 1):
        if number == 1:
            msg = EmailMessage()
            msg.set_content(_new_text(number) + "\n")
        elif number % 2:
            msg = _gmail_reply(number, history)
        else:
            msg = _outlook_reply(number, history)
        msg["From"] = "Bob Builder <bob@example.com>" if number % 2 == 0 else "alice@example.com"
        msg["Subject"] = "Offsite" if number == 1 else "Re: Offsite"
        msg["Message-ID"] = f"<offsite-{number}@example.com>"
        raw = msg.as_bytes()
        raws.append(raw)
        # What the next client quotes: this message as its reader renders it.
        body = msg.get_content()
        history = html_to_text(body) if msg.get_content_subtype() == "html" else body.strip()
    return raws


def _agent_text(raw: bytes, *, strip_quoted: bool) -> str:
    message = to_inbound(
        parse_mail(raw),
        runtime_key="email",
        folder="INBOX",
        uid=1,
        received_at=RECEIVED,
        strip_quoted=strip_quoted,
    )
    assert isinstance(message.content, MessageContent.Text)
    return message.content.text


def test_twenty_message_thread_reads_new_text_only(capsys: pytest.CaptureFixture[str]) -> None:
    raws = _thread(20)
    stripped = [_agent_text(raw, strip_quoted=True) for raw in raws]
    full = [_agent_text(raw, strip_quoted=False) for raw in raws]
    right = sum(_squash(text) == _squash(_new_text(n)) for n, text in enumerate(stripped, start=1))
    with_strip, without = sum(map(len, stripped)), sum(map(len, full))
    with capsys.disabled():
        sys.stdout.write(
            "\n20-message thread, each reply quoting the whole history; characters the "
            "agent reads:\n"
            f"  without stripping: {without:>7,} in all, {without // 20:>6,} a message\n"
            f"  with stripping:    {with_strip:>7,} in all, {with_strip // 20:>6,} a message\n"
            f"  new text split right: {right} / 20\n"
        )
    assert right == 20
    assert with_strip * 10 < without
