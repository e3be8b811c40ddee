"""The fast tree builder gives the stdlib parser's tree, or leaves the mail to it.

``spacebot_email.mime_tree.build_tree`` stands in for ``email.feedparser`` on regular
mail. Whatever it builds must be the stdlib's tree exactly (headers, payloads,
preambles, epilogues, line ends); what it does not build, the stdlib parses.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spacebot_email.mime_tree import build_tree
from spacebot_email.parse import _COMPAT32

CORPUS = Path(__file__).parent / "corpus"
CORPUS_MAILS = sorted(path for path in CORPUS.rglob("*") if path.suffix in {".eml", ".raw", ".txt"})


def _shape(msg: Message) -> tuple[object, ...]:
    """Everything the parser decides about a message, the parts below it included."""
    payload = msg._payload
    if isinstance(payload, list):
        payload = [_shape(part) for part in payload]
    return (
        type(msg),
        msg._headers,
        payload,
        msg.preamble,
        msg.epilogue,
        [repr(defect) for defect in msg.defects],
        msg.get_unixfrom(),
        msg.get_default_type(),
    )


def _built_and_checked(raw: bytes) -> bool:
    """Whether ``build_tree`` built ``raw``; when it did, its tree is the stdlib's."""
    tree = build_tree(raw.decode("ascii", "surrogateescape"), _COMPAT32)
    if tree is None:
        return False
    assert _shape(tree) == _shape(BytesParser(policy=_COMPAT32).parsebytes(raw))
    return True


def test_corpus_trees_are_the_stdlib_trees() -> None:
    built = [path for path in CORPUS_MAILS if _built_and_checked(path.read_bytes())]
    # Most of the corpus is bounces (message/delivery-status) and broken mail, which the
    # stdlib parses; the rest is built here.
    assert len(built) > 500, f"only {len(built)} of {len(CORPUS_MAILS)} built"


PLAIN = (
    b"From: Alice <alice@example.com>\r\nSubject: Hello\r\n\tagain\r\n"
    b"Content-Type: text/plain\r\n\r\nHi,\r\nsee you.\r\n"
)
ALTERNATIVE_WITH_FILE = (
    b"From: alice@example.com\nContent-Type: multipart/mixed; boundary=outer\n\n"
    b'preamble\n--outer\nContent-Type: multipart/alternative; boundary="inner"\n\n'
    b"--inner\nContent-Type: text/plain\n\nplain\n--inner\nContent-Type: text/html\n\n"
    b"<p>html</p>\n--inner--\n\n--outer\nContent-Type: application/pdf; name=a.pdf\n"
    b"Content-Transfer-Encoding: base64\n\nJVBERi0=\n--outer-- \nepilogue\n"
)
FORWARD = (
    b"From: bob@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n--b\r\n"
    b"Content-Type: message/rfc822\r\n\r\nFrom: carol@example.com\r\nSubject: Old\r\n\r\n"
    b"Old text\r\n--b--\r\n"
)


def test_regular_mail_is_built_as_the_stdlib_builds_it() -> None:
    for raw in (PLAIN, ALTERNATIVE_WITH_FILE, FORWARD, PLAIN.replace(b"\r\n", b"\n")):
        assert _built_and_checked(raw)


def test_irregular_mail_is_left_to_the_stdlib() -> None:
    irregular = {
        "bare CR": PLAIN.replace(b"\r\n", b"\r"),
        "envelope line": b"From alice@example.com Mon Dec  7 10:00:00 2026\n" + PLAIN,
        "no header/body separator": b"Subject: x\r\nbody text\r\n",
        "no closing boundary": FORWARD.replace(b"--b--\r\n", b""),
        "no opening boundary": b"Content-Type: multipart/mixed; boundary=b\n\ntext\n",
        "no boundary parameter": b"Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n",
        "delivery status": b"Content-Type: message/delivery-status\n\nA: 1\n\nB: 2\n",
        "digest": b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nx\n--d--\n",
        "boundary lines in a row": b"Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\nx\n",
    }
    for name, raw in irregular.items():
        assert build_tree(raw.decode("ascii", "surrogateescape"), _COMPAT32) is None, name
        assert BytesParser(policy=_COMPAT32).parsebytes(raw) is not None


# -- Generated mail: regular and broken, all line ends, boundaries that nearly match ----

_LINE_ENDS = st.sampled_from(["\r\n", "\n"])
_TEXT_LINE = st.text(st.sampled_from("ab -:=\t.<>é"), max_size=12)
_BOUNDARIES = st.sampled_from(["b", "b2", "=_x", "b--", "--b"])


@st.composite
def _entity(draw: st.DrawFn, depth: int = 0) -> list[str]:
    """The lines of a message or part: headers, then a body or parts (line ends later)."""
    headers = draw(st.lists(st.sampled_from(["X-A: 1", "Subject: s", " folded", ""]), max_size=3))
    if depth < 2 and draw(st.booleans()):
        boundary = draw(_BOUNDARIES)
        kind = draw(st.sampled_from(["mixed", "alternative", "digest"]))
        lines = [*headers, f'Content-Type: multipart/{kind}; boundary="{boundary}"', ""]
        lines += draw(st.lists(_TEXT_LINE, max_size=2))  # preamble
        for _ in range(draw(st.integers(0, 3))):
            lines.append("--" + boundary + draw(st.sampled_from(["", " ", "\t", "x"])))
            lines += draw(_entity(depth + 1))
        if draw(st.booleans()):
            lines.append("--" + boundary + "--" + draw(st.sampled_from(["", " "])))
        return lines + draw(st.lists(_TEXT_LINE, max_size=2))  # epilogue
    if depth < 2 and draw(st.integers(0, 4)) == 0:
        return [*headers, "Content-Type: message/rfc822", "", *draw(_entity(depth + 1))]
    return [*headers, "", *draw(st.lists(_TEXT_LINE, max_size=3))]


@settings(max_examples=400, deadline=None)
@given(lines=_entity(), line_end=_LINE_ENDS, last_line_end=st.booleans())
def test_generated_trees_are_the_stdlib_trees(
    lines: list[str], line_end: str, last_line_end: bool
) -> None:
    raw = line_end.join(lines) + (line_end if last_line_end else "")
    _built_and_checked(raw.encode("utf-8"))


def test_generated_mail_is_mostly_built() -> None:
    """The property above would hold if nothing were built: most regular mail is."""
    built = 0

    @settings(max_examples=200, deadline=None, database=None)
    @given(lines=_entity(), line_end=_LINE_ENDS)
    def count(lines: list[str], line_end: str) -> None:
        nonlocal built
        built += _built_and_checked((line_end.join(lines) + line_end).encode("utf-8"))

    count()
    assert built > 50
