"""A realistic, reproducible backlog of mail, written straight into a Maildir.

The mix (by share of the backlog): plain-text mail from people, some of it replying in
an earlier thread (40 %); HTML mail, half of it HTML only so that it must be converted
to text (25 %); mail with a 50 KB attachment (20 %); auto-generated mail that the bot
must not answer: out-of-office replies, bulk mail, bounces (15 %). The same seed gives
the same mails byte for byte, so every scenario of a run and every run see the same
backlog.

Mail is written the way a local delivery agent does it (one file per mail in
``Maildir/new``, the size in the file name), because delivering 50,000 mails through
LMTP would take minutes; Dovecot indexes them when the bot first opens the folder.
"""

from __future__ import annotations

import os
import random
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import attrs

SEED = 20240605
ATTACHMENT_BYTES = 50 * 1024
SENDERS = 300
#: Cumulative shares of the mix: plain, HTML, attachment, auto-generated.
_MIX = (("plain", 0.40), ("html", 0.65), ("attachment", 0.85), ("auto", 1.0))
_WORDS = (
    "order",
    "invoice",
    "delivery",
    "account",
    "password",
    "reset",
    "meeting",
    "tomorrow",
    "report",
    "please",
    "thanks",
    "question",
    "problem",
    "refund",
    "shipping",
    "update",
    "customer",
    "support",
    "ticket",
    "urgent",
    "schedule",
    "review",
    "contract",
    "price",
    "quote",
    "payment",
    "received",
    "missing",
    "package",
    "address",
    "change",
    "help",
)


@attrs.frozen
class Backlog:
    """Where a generated backlog lives and what it holds.

    :ivar directory: the template folder holding one file per mail.
    :ivar files: the file names, in delivery order.
    :ivar kinds: how many mails of each kind (plain, html, attachment, auto).
    :ivar total_bytes: the size of all mails together.
    """

    directory: Path
    files: tuple[str, ...]
    kinds: dict[str, int]
    total_bytes: int

    @property
    def answerable(self) -> int:
        """How many mails get a reply (all but the auto-generated ones)."""
        return len(self.files) - self.kinds.get("auto", 0)


def generate(directory: Path, count: int, recipient: str, seed: int = SEED) -> Backlog:
    """Write ``count`` mails to ``recipient`` into ``directory`` (one file each).

    A directory that already holds a backlog of the same size and seed is reused.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f".backlog-{count}-{seed}-{recipient}"
    if stamp.exists():
        files = tuple(stamp.read_text().split())
        kinds = _count_kinds(directory, files)
        total = sum((directory / name).stat().st_size for name in files)
        return Backlog(directory, files, kinds, total)
    names: list[str] = []
    kinds: dict[str, int] = {}
    total = 0
    for number, (kind, raw) in enumerate(mails(count, recipient, seed)):
        # Maildir names carry the size (S=) and the size with CRLF (W=), as Dovecot's
        # own delivery writes them, so the server knows RFC822.SIZE without reading.
        name = f"{1700000000 + number}.M{number}P1.bench,S={len(raw)},W={len(raw)}.{kind}"
        (directory / name).write_bytes(raw)
        names.append(name)
        kinds[kind] = kinds.get(kind, 0) + 1
        total += len(raw)
    stamp.write_text("\n".join(names))
    return Backlog(directory, tuple(names), kinds, total)


def _count_kinds(directory: Path, files: tuple[str, ...]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for name in files:
        kind = name.rsplit(".", 1)[-1]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def fill_maildir(backlog: Backlog, maildir: Path, uid: int, gid: int, limit: int = 0) -> int:
    """Hard-link the backlog's mails into ``maildir/new`` as unseen mail.

    :param limit: link only the first ``limit`` mails (0: all).
    :return: how many mails were linked.
    """
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for path in (maildir.parent, maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
        os.chown(path, uid, gid)
        path.chmod(0o700)
    files = backlog.files[:limit] if limit else backlog.files
    for name in files:
        source = backlog.directory / name
        if source.stat().st_uid != uid:
            os.chown(source, uid, gid)
        # Dovecot renames the file when it sets \Seen and never rewrites it, so a
        # hard link is safe and costs no copy.
        os.link(source, maildir / "new" / name.rsplit(".", 1)[0])
    return len(files)


def mails(count: int, recipient: str, seed: int = SEED) -> Iterator[tuple[str, bytes]]:
    """``count`` mails of the mix, as (kind, CRLF bytes), in delivery order."""
    rng = random.Random(seed)
    start = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
    earlier: list[tuple[str, str, str]] = []  # (message id, subject, sender) to reply to
    for number in range(count):
        kind = _kind(rng.random())
        date = start + timedelta(seconds=7 * number)
        sender = f"customer{rng.randrange(SENDERS)}@example.org"
        builder = {"plain": _plain, "html": _html, "attachment": _attachment, "auto": _auto}
        message = builder[kind](rng, sender, earlier)
        message["To"] = recipient
        message["Date"] = format_datetime(date)
        message["Message-ID"] = f"<bench{number}.{seed}@example.org>"
        if message.is_multipart():
            message.set_boundary(f"=_bench{number}_{seed}")
        if kind != "auto" and len(earlier) < 2000:
            earlier.append((message["Message-ID"], message["Subject"], sender))
        yield kind, message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def _kind(draw: float) -> str:
    return next(kind for kind, upper in _MIX if draw < upper)


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [
        " ".join(_sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 6)))
        for _ in range(count)
    ]


def _plain(rng: random.Random, sender: str, earlier: list[tuple[str, str, str]]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Customer {sender.split('@')[0][8:]} <{sender}>"
    if earlier and rng.random() < 0.25:
        parent_id, subject, _ = rng.choice(earlier)
        message["Subject"] = subject if subject.startswith("Re: ") else f"Re: {subject}"
        message["In-Reply-To"] = parent_id
        message["References"] = parent_id
    else:
        message["Subject"] = _sentence(rng, rng.randint(3, 7)).rstrip(".")
    body = "\n\n".join(textwrap.fill(p, 72) for p in _paragraphs(rng, rng.randint(1, 5)))
    charset = "utf-8" if rng.random() < 0.8 else "iso-8859-1"
    if charset == "utf-8" and rng.random() < 0.3:
        body += "\n\nGrüße, Zoë — envoyé de mon téléphone"
    message.set_content(body + "\n", charset=charset)
    return message


def _html_body(rng: random.Random) -> str:
    rows = "".join(
        f"<tr><td>{rng.choice(_WORDS)}</td><td>{rng.randint(1, 999)}.00 EUR</td></tr>"
        for _ in range(rng.randint(2, 8))
    )
    paragraphs = "".join(f"<p>{p}</p>" for p in _paragraphs(rng, rng.randint(2, 5)))
    return (
        "<html><head><style>p {margin: 0}</style></head><body>"
        f'<table width="100%"><tr><td><h2>Hello</h2>{paragraphs}</td></tr></table>'
        f"<table>{rows}</table>"
        '<p>See <a href="https://example.org/account">your account</a>.</p>'
        '<img src="https://example.org/pixel.gif" width="1" height="1" alt="">'
        "</body></html>"
    )


def _html(rng: random.Random, sender: str, earlier: list[tuple[str, str, str]]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["Subject"] = _sentence(rng, rng.randint(3, 6)).rstrip(".")
    html = _html_body(rng)
    if rng.random() < 0.5:
        message.set_content("\n\n".join(_paragraphs(rng, 2)) + "\n")
        message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    return message


def _attachment(
    rng: random.Random, sender: str, earlier: list[tuple[str, str, str]]
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["Subject"] = "Documents: " + _sentence(rng, 3).rstrip(".")
    message.set_content("Please find the document attached.\n\n" + _paragraphs(rng, 1)[0] + "\n")
    data = rng.randbytes(ATTACHMENT_BYTES)
    filename = f"scan-{rng.randrange(10**6):06d}.pdf"
    message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message


def _auto(rng: random.Random, sender: str, earlier: list[tuple[str, str, str]]) -> EmailMessage:
    message = EmailMessage()
    variant = rng.randrange(4)
    if variant == 0:
        message["From"] = sender
        message["Subject"] = "Out of office"
        message["Auto-Submitted"] = "auto-replied"
    elif variant == 1:
        message["From"] = "news@shop.example.net"
        message["Subject"] = "This week's offers"
        message["Precedence"] = "bulk"
        message["List-Unsubscribe"] = "<https://shop.example.net/unsubscribe>"
    elif variant == 2:
        message["From"] = sender
        message["Subject"] = "Automatic reply"
        message["X-Autoreply"] = "yes"
    else:
        message["From"] = "MAILER-DAEMON@mx.example.net"
        message["Subject"] = "Undelivered Mail Returned to Sender"
        message["Auto-Submitted"] = "auto-replied"
    message.set_content("\n\n".join(_paragraphs(rng, 2)) + "\n")
    return message
