"""What the sender wrote now, apart from quoted history and signature.

Mail clients quote the whole thread in every reply and append a signature; an agent
pays for every token it reads and answers worse when the newest question is buried
under ten quoted replies. :func:`split_reply` separates plain text into the new text,
the quoted part and the signature; :func:`split_html_reply` finds the quoted part of an
HTML body by its markup, before conversion to text loses it. Both are pure, never
raise on odd input, and keep everything: no line of the text is dropped, each one ends
up in exactly one of the parts.

The rules, plain text:

* **Where quoting starts.** A run of ``>`` lines; an attribution line before one
  (``On <date>, <name> wrote:``, ``Am ... schrieb ...:``, ``Le ... a écrit :``,
  ``El ... escribió:``, and Dutch, Italian, Portuguese, Scandinavian, also wrapped over
  up to three lines); Outlook's separator (``-----Original Message-----`` and its
  translations) or its ``From:/Sent:/To:/Subject:`` block (``Von:/Gesendet:``,
  ``De :/Envoyé :``, ``De:/Enviado el:`` ...). A dated attribution with no ``>`` lines
  after it, the Outlook separator and the Outlook block quote everything to the end:
  those clients never write below the quote. A bare ``<name> wrote:`` counts only
  when ``>`` lines follow it.
* **Top-posted and bottom-posted.** When the new text is one block (above the quote,
  below it, or between two quotes), the new text is that block.
* **Interleaved.** When new text stands in two or more places between quotes, each
  answer means nothing without the line it answers: the new text runs from the quote
  just above the first answer to the end of the last answer, quotes included; only
  the quotes before that and after the last answer go to ``quoted``.
* **Forwards are not quotes.** A forwarded message (``---------- Forwarded message
  ----------``, ``Begin forwarded message:`` and their translations) is what the
  sender wants read, not history: a text with a forward marker before its first quote
  is not split at all.
* **All quote.** When nothing new is left (a forward without comment, a mail that is
  one big quote), the whole text is the new text, unsplit.
* **Signatures.** Only in the last block of new text, and only when unmistakable:
  the RFC 3676 ``-- `` line (any length after it), a bare ``--`` line (what HTML
  conversion leaves of ``-- <br>``) with at most :data:`MAX_LAX_SIGNATURE_LINES` lines
  after it, a mailing list footer, or a last line a phone writes (``Sent from my
  iPhone``, ``Von meinem iPhone gesendet``, ``Envoyé de mon iPhone``, ``Enviado desde
  mi iPhone``, ``Get Outlook for iOS`` ...). Sign-offs such as ``Best regards,
  Alice`` stay: they cost a few tokens and telling them from text would eat real text.

HTML: see :func:`split_html_reply`.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator

import attrs
from bs4 import BeautifulSoup, NavigableString, Tag

__all__ = ["MAX_LAX_SIGNATURE_LINES", "ReplyParts", "split_html_reply", "split_reply"]

logger = logging.getLogger(__name__)

#: A bare ``--`` line starts a signature only when at most this many lines follow.
MAX_LAX_SIGNATURE_LINES = 10
#: An attribution may be wrapped over this many lines.
_MAX_ATTRIBUTION_LINES = 3
#: A line longer than this opens no attribution (the patterns allow about 300).
_MAX_ATTRIBUTION_CHARS = 400
#: An Outlook header block: its fields are found within this many lines of ``From:``.
_HEADER_BLOCK_LINES = 8
#: How far past an attribution (or a ``>From`` line) to look for the quote it opens.
_LOOKAHEAD_LINES = 4

# Attribution lines, per language: the opening word, then (with a digit somewhere: every
# client writes the date) the verb and the colon at the very end.
_DATED_ATTRIBUTION = re.compile(
    r"""^(?=.*\d)(?:
        On\s.{1,300}\swrote\s?
      | Am\s.{1,300}\sschrieb(?:\s.{0,200})?
      | Le\s.{1,300}\sa\sécrit\s?
      | El\s.{1,300}\sescribió\s?
      | Op\s.{1,300}\sschreef(?:\s.{0,200})?
      | Il\s.{1,300}\sha\sscritto\s?
      | Em\s.{1,300}\sescreveu\s?
      | Den\s.{1,300}\sskrev(?:\s.{0,200})?
    ):$""",
    re.VERBOSE,
)
_ATTRIBUTION_OPENERS = ("On ", "Am ", "Le ", "El ", "Op ", "Il ", "Em ", "Den ")
# "Alice Example <alice@example.com> wrote:", trusted only when > lines follow.
_BARE_ATTRIBUTION = re.compile(
    r"^.{1,200}\s(?:wrote|schrieb|a\sécrit|escribió|schreef|ha\sscritto|escreveu|skrev)"
    r"(?:\s.{0,100})?\s?:$"
)
_OUTLOOK_SEPARATOR = re.compile(
    r"^-{3,}\s*(?:original\smessage|ursprüngliche\snachricht|message\sd'origine"
    r"|mensaje\soriginal|oorspronkelijk\sbericht|messaggio\soriginale|mensagem\soriginal"
    r"|originalmeddelande|oprindelig\smeddelelse|opprinnelig\smelding)\s*-{3,}$",
    re.IGNORECASE,
)
_UNDERSCORE_RULE = re.compile(r"^_{10,}$")
_RAW_HEADER = re.compile(
    r"^(?:Message-ID|Content-[\w-]+|MIME-Version|Received|Return-Path|Delivered-To|X-[\w-]+)"
    r"\s*:",
    re.IGNORECASE,
)
# Field labels, possibly bold after HTML conversion ("**From:**"); French puts a space
# before the colon.
_FROM_FIELD = re.compile(r"^\*{0,2}(?:From|Von|De|Van|Da|Från|Fra)\s?:\s?\*{0,2}\s*\S")
_OTHER_FIELD = re.compile(
    r"^\*{0,2}(?:Sent|Date|To|Subject|Cc|CC|Reply-To|Gesendet|Datum|An|Betreff|Envoyé"
    r"|À|A|Objet|Enviado\sel|Enviado|Fecha|Para|Asunto|Verzonden|Aan|Onderwerp|Inviato"
    r"|Oggetto|Data|Assunto|Skickat|Till|Ämne|Sendt|Til|Emne)\s?:"
)
_FORWARD_MARKER = re.compile(
    r"^(?:-{2,}\s*(?:forwarded\smessage|weitergeleitete\snachricht|message\stransféré"
    r"|mensaje\sreenviado|doorgestuurd\sbericht|messaggio\sinoltrato"
    r"|mensagem\sencaminhada|vidarebefordrat\smeddelande)\s*-{2,}"
    r"|(?:begin\sforwarded\smessage|anfang\sder\sweitergeleiteten\snachricht"
    r"|début\sdu\smessage\sréexpédié|inicio\sdel\smensaje\sreenviado"
    r"|comienzo\sdel\smensaje\sreenviado)\s?:)$",
    re.IGNORECASE,
)
# The last line a phone or webmail app writes under the text. Short, fixed phrases only.
_DEVICE_FOOTER = re.compile(
    r"^(?:Sent\sfrom\smy\s\S.{0,40}|Sent\sfrom\s(?:Mail|Outlook)\sfor\s\S.{0,30}"
    r"|Get\s\[?Outlook\sfor\s(?:iOS|Android)\S*.{0,60}|Sent\sfrom\sYahoo\sMail\s.{0,40}"
    r"|Sent\swith\s\[?Proton\s?Mail\S*.{0,60}|Von\smeinem\s\S.{0,30}\sgesendet"
    r"|Gesendet\svon\smeinem\s\S.{0,30}|Envoyé\sde\smon\s\S.{0,30}"
    r"|Enviado\sdesde\smi\s\S.{0,30}|Verzonden\svanaf\smijn\s\S.{0,30}"
    r"|Inviato\sda\s\S.{0,30})$"
)
# The same markers anywhere in a text, one per line, for one search over many lines.
_FORWARD_MARKER_LINE = re.compile(
    r"^[ \t\u00a0]*(?:" + _FORWARD_MARKER.pattern[1:-1] + r")[ \t\u00a0]*$",
    re.IGNORECASE | re.MULTILINE,
)
_LIST_FOOTER_RULE = re.compile(r"^_{20,}$")
# First characters and words that may open an Outlook separator or header block.
_RULE_OR_BOLD = frozenset("-_*")
_FROM_WORDS = ("From", "Von", "De", "Van", "Da", "Från", "Fra")
# First characters of a stripped line that a labelling rule may look at: a quote mark,
# a rule or bold marker, the first letter of a From word or of an attribution opener.
# A line starting otherwise opens nothing unless it ends with a colon (a bare
# attribution), so most lines of text are passed over with one test.
_MAY_OPEN_QUOTE = frozenset(
    ">-_*" + "".join(word[0] for word in _FROM_WORDS + _ATTRIBUTION_OPENERS)
)
_NBSP = str.maketrans({"\u00a0": " ", "\u202f": " "})
_SPACES = re.compile(r"\s+")


@attrs.frozen
class ReplyParts:
    """A mail's text split into what the sender wrote now, quoted history and signature.

    Each line of the original text is in exactly one part (in an interleaved reply,
    the quotes answered stay in ``new``). When nothing was split, ``new`` is the
    original text unchanged and the other parts are empty.
    """

    new: str
    quoted: str = ""
    signature: str = ""

    @property
    def is_split(self) -> bool:
        """Whether a quote or a signature was taken out of the text."""
        return bool(self.quoted or self.signature)


@attrs.frozen
class _Block:
    """Lines ``start`` to ``end`` (exclusive) of the text, quoted or new."""

    quoted: bool
    start: int
    end: int


def split_reply(text: str) -> ReplyParts:
    """Split a plain-text mail body into new text, quoted history and signature.

    See the module documentation for the rules.

    :param text: the body, ``\\n`` line ends.
    :return: the parts; ``new`` is ``text`` unchanged when there was nothing to split.
    """
    lines = text.split("\n")
    quoted = _label_lines(lines)
    if _is_forward(lines, quoted):
        return ReplyParts(new=text)
    blocks = _blocks(lines, quoted)
    signature = _take_signature(lines, blocks)
    if signature is None and not any(quoted):
        return ReplyParts(new=text)
    news = [i for i, block in enumerate(blocks) if not block.quoted]
    if not news:
        return ReplyParts(new=text)  # all quote: keep the whole text
    first = news[0] - 1 if len(news) > 1 and news[0] > 0 else news[0]
    kept = blocks[first : news[-1] + 1]
    dropped = blocks[:first] + blocks[news[-1] + 1 :]
    if not dropped and signature is None:
        return ReplyParts(new=text)  # interleaved throughout: nothing to take out
    return ReplyParts(
        new=_span(lines, kept),
        quoted=_pieces(lines, dropped),
        signature=_pieces(lines, [signature]) if signature else "",
    )


# -- Labelling lines ------------------------------------------------------------------


def _label_lines(lines: list[str]) -> list[bool]:
    """For each line, whether it belongs to quoted history."""
    quoted = [False] * len(lines)
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_plain_line(line):
            i += 1  # blank, or text that no rule below can take for a quote
            continue
        if _is_quote_line(line) and not _is_mbox_escape(lines, i):
            end = _quote_run_end(lines, i)
            quoted[i:end] = [True] * (end - i)
            i = end
            continue
        stripped = _clean(line)
        if not stripped:
            i += 1
            continue
        if _starts_quote_to_end(lines, i, stripped):
            quoted[i:] = [True] * (len(lines) - i)
            break
        end = _attribution_end(lines, i, stripped)
        if end is not None:
            if _is_quote_line(_next_non_blank(lines, end)):
                quoted[i:end] = [True] * (end - i)
                i = end
                continue
            if _DATED_ATTRIBUTION.match(_joined(lines, i, end)):
                # Nothing quoted with ">" follows: the history runs to the end.
                quoted[i:] = [True] * (len(lines) - i)
                break
        i += 1
    return quoted


def _is_plain_line(line: str) -> bool:
    """Whether :func:`_label_lines` can pass over ``line`` without looking further.

    True for a blank line and for a line whose first and last characters (stripped)
    can open neither a quote, nor Outlook's history, nor an attribution (see
    :data:`_MAY_OPEN_QUOTE`). :func:`_clean` changes no first or last character, since
    the spaces it replaces are stripped there.
    """
    stripped = line.strip()
    return stripped[:1] not in _MAY_OPEN_QUOTE and stripped[-1:] != ":"


def _is_quote_line(line: str) -> bool:
    """A ``>`` line (up to three spaces of indent, as Markdown allows)."""
    unindented = line.lstrip(" ")
    return unindented[:1] == ">" and len(line) - len(unindented) <= 3


def _is_mbox_escape(lines: list[str], index: int) -> bool:
    """A lone ``>From `` line: mbox's escape of a line starting with "From", not a quote."""
    return (
        lines[index].startswith(">From ")
        and (index == 0 or not _is_quote_line(lines[index - 1]))
        and not _is_quote_line(_next_non_blank(lines, index + 1))
    )


def _quote_run_end(lines: list[str], start: int) -> int:
    """The index after a run of ``>`` lines; blank lines inside the run belong to it."""
    end = start
    while end < len(lines):
        if _is_quote_line(lines[end]):
            end += 1
            continue
        # Blank lines belong to the run when it goes on after them; each is looked at
        # once, so that a million blank lines cost a million steps, not their square.
        following = _next_non_blank_index(lines, end)
        if following is None or following == end or not _is_quote_line(lines[following]):
            break
        end = following
    return end


def _next_non_blank(lines: list[str], start: int, within: int = _LOOKAHEAD_LINES) -> str:
    """The first line that is not blank among the ``within`` from ``start``, or ``""``.

    Bounded: it is asked once per candidate line, and clients leave a blank line or
    two between an attribution and its quote, not pages.
    """
    for index in range(start, min(start + within, len(lines))):
        if lines[index].strip():
            return lines[index]
    return ""


def _clean(line: str) -> str:
    """A line stripped, no-break spaces made plain spaces, for matching."""
    line = line.strip()
    # Most lines have no no-break space; translate() costs more than the test.
    return line.translate(_NBSP) if "\u00a0" in line or "\u202f" in line else line


def _joined(lines: list[str], start: int, end: int) -> str:
    """Lines ``start`` to ``end`` joined by single spaces, for wrapped attributions."""
    return _SPACES.sub(" ", " ".join(_clean(line) for line in lines[start:end]))


def _attribution_end(lines: list[str], start: int, stripped: str) -> int | None:
    """The index after an attribution line (wrapped over up to three lines), or None."""
    if len(stripped) > _MAX_ATTRIBUTION_CHARS:
        return None  # no client writes one this long; the patterns need not look
    if stripped.startswith(_ATTRIBUTION_OPENERS):
        for end in range(start + 1, min(start + _MAX_ATTRIBUTION_LINES, len(lines)) + 1):
            if not lines[end - 1].strip():
                break
            if _DATED_ATTRIBUTION.match(_joined(lines, start, end)):
                return end
    if stripped[-1:] == ":" and _BARE_ATTRIBUTION.match(_SPACES.sub(" ", stripped)):
        return start + 1
    return None


def _starts_quote_to_end(lines: list[str], start: int, stripped: str) -> bool:
    """Whether Outlook's quoted history starts here: its separator or header block."""
    if stripped[:1] not in _RULE_OR_BOLD and not stripped.startswith(_FROM_WORDS):
        return False  # the common case, decided without a regular expression
    if _OUTLOOK_SEPARATOR.match(stripped):
        return True
    if _UNDERSCORE_RULE.match(stripped):
        following = _next_non_blank_index(lines, start + 1)
        return following is not None and _is_header_block(lines, following)
    return _is_header_block(lines, start)


def _next_non_blank_index(lines: list[str], start: int) -> int | None:
    """The index of the first line from ``start`` on that is not blank, or None."""
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def _is_header_block(lines: list[str], start: int) -> bool:
    """``From:`` followed closely by at least two other header fields, as Outlook quotes."""
    # Outlook writes the block from the first column; bounces indent the headers they
    # cite ("  From: ..."), and those are not a reply's history.
    line = _clean(lines[start])
    if lines[start][:1].isspace() or not _FROM_FIELD.match(line):
        return False
    window = lines[start + 1 : start + 1 + _HEADER_BLOCK_LINES]
    fields = {m[0] for m in (_OTHER_FIELD.match(_clean(line)) for line in window) if m}
    if len(fields) < 2:
        return False
    # A raw RFC 5322 header (Message-ID, Content-Type ...) around it means an embedded
    # message or a bounce's copy, not the display block Outlook writes.
    block = [lines[start - 1]] if start else []
    block += itertools.takewhile(str.strip, window)
    return not any(_RAW_HEADER.match(line) for line in block)


def _is_forward(lines: list[str], quoted: list[bool]) -> bool:
    """Whether a forward marker comes before the quoted history (or opens it).

    Apple Mail puts "Begin forwarded message:" inside the ``>`` quote of a forward, so
    the first lines of a quote that has no attribution are looked at too.
    """
    first = quoted.index(True) if True in quoted else len(lines)
    before = "\n".join(lines[:first])
    # Every marker holds a run of dashes or ends with a colon: without either, the
    # (costlier) search over the whole text cannot match.
    if ("--" in before or ":" in before) and _FORWARD_MARKER_LINE.search(before):
        return True
    if first < len(lines) and _is_quote_line(lines[first]):
        opening = [_clean(line.lstrip(" >")) for line in lines[first : first + 3]]
        return any(_FORWARD_MARKER.match(line) for line in opening)
    return False


# -- Blocks and signature -------------------------------------------------------------


def _blocks(lines: list[str], quoted: list[bool]) -> list[_Block]:
    """Runs of quoted and new lines; new runs with only blank lines are dropped, and the
    runs on either side of one then merge."""
    runs: list[_Block] = []
    start = 0
    for is_quoted, run in itertools.groupby(quoted):
        end = start + sum(1 for _ in run)
        runs.append(_Block(is_quoted, start, end))
        start = end
    blocks: list[_Block] = []
    for run in runs:
        if not run.quoted and not any(line.strip() for line in lines[run.start : run.end]):
            continue
        if blocks and blocks[-1].quoted == run.quoted:
            blocks[-1] = _Block(run.quoted, blocks[-1].start, run.end)
        else:
            blocks.append(run)
    return blocks


def _take_signature(lines: list[str], blocks: list[_Block]) -> _Block | None:
    """Cut the signature off the last block of new text, in place; return it."""
    last = next((i for i in range(len(blocks) - 1, -1, -1) if not blocks[i].quoted), None)
    if last is None:
        return None
    block = blocks[last]
    start = _signature_start(lines, block.start, block.end)
    if start is None:
        return None
    if start > block.start and any(line.strip() for line in lines[block.start : start]):
        blocks[last] = _Block(False, block.start, start)
    else:
        # The quotes around it stay two blocks: the signature lies between them.
        del blocks[last]
    return _Block(False, start, block.end)


def _signature_start(lines: list[str], start: int, end: int) -> int | None:
    """Where the signature of lines ``start`` to ``end`` begins, or None."""
    delimited = _delimited_start(lines, start, end)
    if delimited is not None:
        return delimited
    for last in range(end - 1, start - 1, -1):
        if lines[last].strip():  # the last line that is not blank
            return last if _DEVICE_FOOTER.match(_clean(lines[last])) else None
    return None


def _delimited_start(lines: list[str], start: int, end: int) -> int | None:
    """Where a ``--`` delimiter or a list footer's rule starts a signature, or None."""
    # Most texts have no line starting with "--" or "__": one search in C tells.
    block = "\n" + "\n".join(lines[start:end])
    if "\n--" not in block and "\n__" not in block:
        return None
    for index in range(start, end):
        line = lines[index]
        if line[:2] not in ("--", "__"):
            continue  # neither a delimiter nor a footer rule
        if line.rstrip("\r") == "-- ":
            return _with_fence_before(lines, start, index)
        if line.strip() == "--" and _few_lines_after(lines, index + 1, end):
            return _with_fence_before(lines, start, index)
        if _LIST_FOOTER_RULE.match(line.strip()) and "list" in " ".join(
            lines[index + 1 : min(end, index + 4)]
        ):
            return index
    return None


def _with_fence_before(lines: list[str], start: int, index: int) -> int:
    """The delimiter's index, or the code fence's just above it.

    Thunderbird writes a plain-text signature in HTML as ``<pre>``, which the HTML
    conversion fences with a line of three backticks: the fence goes with the signature.
    """
    if index > start and lines[index - 1].strip() == "```":
        return index - 1
    return index


def _few_lines_after(lines: list[str], start: int, end: int) -> bool:
    """Whether at most :data:`MAX_LAX_SIGNATURE_LINES` non-blank lines follow ``start``.

    Stops counting past the limit, so that many ``--`` lines cost little each.
    """
    count = 0
    for index in range(start, end):  # not islice: it would step over the first lines
        count += bool(lines[index].strip())
        if count > MAX_LAX_SIGNATURE_LINES:
            return False
    return True


def _span(lines: list[str], blocks: list[_Block]) -> str:
    """The text from the first block to the last, as written, blank lines included."""
    if not blocks:
        return ""
    return "\n".join(lines[blocks[0].start : blocks[-1].end]).strip("\n")


def _pieces(lines: list[str], blocks: list[_Block]) -> str:
    """The text of each block, a blank line apart (the blocks need not be adjacent)."""
    pieces = ("\n".join(lines[block.start : block.end]).strip("\n") for block in blocks)
    return "\n\n".join(piece for piece in pieces if piece)


# -- HTML -------------------------------------------------------------------------------

# Cheap test before parsing: HTML without any of these has no quote we can see. It
# runs on the lowercased HTML: with re.IGNORECASE the search cost seven times more.
_HTML_QUOTE_HINT = re.compile(
    r"gmail_quote|type=.?cite|moz-cite-prefix|divrplyfwdmsg|yahoo_quoted"
    r"|protonmail_quote|stopspelling|zwchr|outlookmessageheader"
    r"|border-top:\s*solid\s+#(?:e1e1e1|b5c4df)"
)
_QUOTE_CLASSES = frozenset({"gmail_quote", "yahoo_quoted", "protonmail_quote", "moz-cite-prefix"})
# Markers after which Outlook, Hotmail and Zimbra put only the quoted history.
_HISTORY_IDS = frozenset({"divrplyfwdmsg", "x_divrplyfwdmsg", "stopspelling", "zwchr"})
_OUTLOOK_BORDER = re.compile(r"border-top:\s*solid\s+#(?:E1E1E1|B5C4DF)", re.IGNORECASE)


def split_html_reply(html: str) -> tuple[str, str]:
    """Split an HTML mail body into the new part and the quoted history, as HTML.

    The quote is found by the markup clients write: Gmail's ``gmail_quote`` (with its
    ``gmail_attr`` attribution), ``<blockquote type="cite">`` (Apple Mail,
    Thunderbird) with Thunderbird's ``moz-cite-prefix`` attribution, Outlook on the web's
    ``divRplyFwdMsg``, Outlook desktop's bordered ``From:`` block, Yahoo's and Proton's
    quote classes. Everything from the first quote to the end is the quoted part.

    Nothing is split (``(html, "")``) when there is no such markup, when the quote is a
    forwarded message, when text the sender wrote follows the quote (a bottom-posted or
    interleaved reply: the caller's text rules, see :func:`split_reply`, handle it
    after conversion, where the quote reads as ``>`` lines), or when nothing but the
    quote would be left. Never raises.

    :param html: the decoded HTML body.
    :return: the new HTML and the quoted HTML.
    """
    if not _HTML_QUOTE_HINT.search(html.lower()):
        return html, ""
    try:
        return _split_html(html)
    except RecursionError:
        # bs4 walks some structures recursively; HTML nested thousands deep is hostile.
        logger.debug("HTML nested too deep to look for a quote; left whole")
        return html, ""


def _split_html(html: str) -> tuple[str, str]:
    """:func:`split_html_reply` without the guard against deep nesting."""
    soup = BeautifulSoup(html, "html.parser")
    first = next(_quote_starts(soup), None)
    if first is None:
        return html, ""
    start, to_end = first
    if _looks_forwarded(start):
        return html, ""
    if not to_end and _has_own_text_after(start):
        return html, ""
    start = _attribution_before(start) or start
    quoted = _cut_to_end(start)
    if not soup.get_text().strip():
        return html, ""
    return str(soup), "".join(str(node) for node in quoted)


def _quote_starts(soup: BeautifulSoup) -> Iterator[tuple[Tag, bool]]:
    """Quote elements in document order, each with whether only history follows it."""
    for tag in soup.find_all(True):
        if _is_history_marker(tag):
            yield _with_rule_before(tag), True
        elif _is_quote_element(tag):
            yield tag, False


def _is_quote_element(tag: Tag) -> bool:
    """A quote container: Gmail's, a cited blockquote, Thunderbird's attribution ..."""
    if tag.name == "blockquote" and str(tag.get("type", "")).lower() == "cite":
        return True
    return not _QUOTE_CLASSES.isdisjoint(tag.get("class") or ())


def _is_history_marker(tag: Tag) -> bool:
    """An element after which Outlook-style clients put only quoted history."""
    if str(tag.get("id", "")).lower() in _HISTORY_IDS:
        return True
    if "OutlookMessageHeader" in (tag.get("class") or ()):
        return True
    style = str(tag.get("style", ""))
    return (
        tag.name == "div"
        and bool(_OUTLOOK_BORDER.search(style))
        and bool(_FROM_FIELD.match(_clean(tag.get_text(" "))))
    )


def _with_rule_before(tag: Tag) -> Tag:
    """Outlook on the web draws a rule (``<hr>``) just before its header block."""
    previous = _previous_element(tag)
    return previous if previous is not None and previous.name == "hr" else tag


def _previous_element(tag: Tag) -> Tag | None:
    """The previous sibling element, skipping whitespace-only text."""
    for sibling in tag.previous_siblings:
        if isinstance(sibling, Tag):
            return sibling
        if str(sibling).strip():
            return None
    return None


def _looks_forwarded(tag: Tag) -> bool:
    """Whether a quote opens with a forward marker (Gmail's, Apple Mail's ...)."""
    opening = tag.get_text("\n")[:400]
    return any(_FORWARD_MARKER.match(_clean(line)) for line in opening.split("\n"))


def _has_own_text_after(tag: Tag) -> bool:
    """Whether text outside any quote element follows ``tag`` in the document."""
    node: Tag | None = tag
    while node is not None and node.name != "[document]":
        for sibling in node.next_siblings:
            if _own_text(sibling):
                return True
        node = node.parent
    return False


def _own_text(node: object) -> bool:
    """Whether ``node`` holds visible text that is not inside a quote element."""
    if isinstance(node, NavigableString):
        return bool(str(node).strip()) and type(node) is NavigableString
    if not isinstance(node, Tag) or _is_quote_element(node) or _is_history_marker(node):
        return False
    if node.name in ("style", "script", "head", "title"):
        return False
    return any(_own_text(child) for child in node.children)


def _attribution_before(tag: Tag) -> Tag | None:
    """An attribution element just before a cited blockquote (older Apple Mail)."""
    if tag.name != "blockquote":
        return None
    previous = _previous_element(tag)
    while previous is not None and previous.name == "br":
        previous = _previous_element(previous)
    if previous is None:
        return None
    text = _SPACES.sub(" ", _clean(previous.get_text(" ")))
    if _DATED_ATTRIBUTION.match(text) or _BARE_ATTRIBUTION.match(text):
        return previous
    return None


def _cut_to_end(start: Tag) -> list[object]:
    """Remove ``start`` and everything after it in document order; return it in order."""
    removed: list[object] = []
    node: Tag | None = start
    while node is not None and node.name != "[document]":
        following = list(node.next_siblings)
        parent = node.parent
        if node is start:
            removed.append(node.extract())
        for sibling in following:
            removed.append(sibling.extract())
        node = parent
    return removed
