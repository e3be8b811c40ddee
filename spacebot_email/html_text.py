"""HTML mail bodies as readable text, Markdown-flavoured, from lxml's parse tree.

Agents read this text, so it keeps what carries meaning (paragraphs, lists, links as
``[text](url)``, headings, emphasis, quotes, code) and drops what does not: scripts,
styles, the ``<head>``, tracking pixels and the invisible characters that newsletters
pad their preview text with. Mail HTML lays itself out with nested tables; rendering
those as Markdown tables would bury the text in pipes, so a table row becomes one line
of its non-empty cells, and a cell that holds blocks (a nested table, paragraphs) stays
a block.

The rules are markdownify's (its whitespace handling and its rendering of each element,
with the options mail wants), applied in one walk over the tree that libxml2 builds.
markdownify itself builds a BeautifulSoup tree in Python and asks it for each element's
parents and siblings, which made HTML mail the costliest mail to read (0.8 ms for a
2 KB body, against 0.05 ms here). The walk keeps its own stack, so HTML nested
thousands deep costs no recursion; libxml2 stops at 256 levels, and past that the text
is read without its Markdown (:func:`_flat_text`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from html.parser import HTMLParser

import attrs
from lxml import etree

__all__ = ["html_to_text", "normalize_whitespace"]

# Characters with no visible width that marketing mail repeats hundreds of times
# (zero-width space, BOM, combining grapheme joiner, soft hyphen). U+200C and U+200D are
# kept: they change how Persian, Indic scripts and emoji render.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\ufeff\u034f\u00ad"), None)
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_WHITESPACE_RUNS = re.compile(r"[\t \r\n]+")
_BACKTICK_RUNS = re.compile(r"`+")
_PRE_LEADING = re.compile(r"^[ \n]*\n")
_PRE_TRAILING = re.compile(r"[ \n]*$")
_HEADING = re.compile(r"h(\d+)")
_CELL_SEPARATOR = " | "

#: Elements whose content is not part of what the mail says; not even walked.
_SKIPPED = frozenset({"script", "style", "head", "title"})
#: Block elements: whitespace just inside them, and just outside, is dropped.
_BLOCKS = frozenset(
    {"p", "blockquote", "article", "div", "section", "ol", "ul", "li", "dl", "dt", "dd"}
    | {"table", "thead", "tbody", "tfoot", "tr", "td", "th"}
    | {f"h{level}" for level in range(1, 7)}
)
#: Around a ``<pre>`` too, whitespace is dropped (not inside it).
_BLOCKS_AND_PRE = _BLOCKS | {"pre"}
#: Elements whose content is rendered on one line (headings, table cells).
_INLINE_CONTEXT = frozenset({"td", "th"} | {f"h{level}" for level in range(1, 7)})
#: Elements whose content is kept literally, without emphasis or links.
_NO_FORMAT_CONTEXT = frozenset({"pre", "code", "kbd", "samp"})


def html_to_text(html: str) -> str:
    """Convert an HTML mail body to readable Markdown-flavoured text.

    Links stay as ``[text](url)``, entities are decoded, ``<script>``, ``<style>`` and
    ``<head>`` content is dropped, trailing spaces are stripped and runs of blank lines
    collapse to one. Never raises on malformed HTML (libxml2 repairs it).

    :param html: the decoded HTML text.
    :return: the text, without leading or trailing blank lines.
    """
    parser = etree.HTMLParser(
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        collect_ids=False,
        default_doctype=False,
    )
    # Bytes with their encoding named: a str would be refused for holding an XML
    # declaration, and bytes without one would be re-decoded by a <meta charset>.
    root = etree.fromstring(html.encode("utf-8", "replace"), parser)
    if any(error.type == etree.ErrorTypes.ERR_RESOURCE_LIMIT for error in parser.error_log):
        # Nested deeper than libxml2 goes: it stopped there. The text is still there.
        text = _flat_text(html)
    else:
        text = "" if root is None else _render(root).strip("\n")
    return normalize_whitespace(text.translate(_INVISIBLE).replace("\u00a0", " "))


def normalize_whitespace(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines to one.

    Spaces inside a line are kept: in ``<pre>`` text and Markdown indentation they mean
    something.

    :param text: text with ``\\n`` line ends.
    :return: the normalized text, stripped of blank lines at both ends.
    """
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


# -- The walk -----------------------------------------------------------------------------


@attrs.frozen
class _Context:
    """What an element's ancestors say about how its content is rendered."""

    in_pre: bool = False
    inline: bool = False
    no_format: bool = False
    in_list_item: bool = False

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (a handful of contexts, kept for good)
    def inside(self, tag: str) -> _Context:
        """The context of the children of a ``tag`` element in this context."""
        return _Context(
            in_pre=self.in_pre or tag == "pre",
            inline=self.inline or tag in _INLINE_CONTEXT,
            no_format=self.no_format or tag in _NO_FORMAT_CONTEXT,
            in_list_item=self.in_list_item or tag == "li",
        )


_TOP = _Context()


class _Frame:
    """An element being rendered: its content in order, children filled in as they end.

    ``pieces`` holds each text run as rendered and a slot for each child element,
    which :meth:`fill` fills when the child is done; ``children`` holds the child
    elements still to walk with their slots. Skipped elements (scripts, styles, the
    head) are not walked: their slot stays empty.
    """

    def __init__(self, element: etree._Element, context: _Context, ordinal: int) -> None:
        self.element = element
        self.tag = element.tag if isinstance(element.tag, str) else ""
        self.context = context
        self.ordinal = ordinal
        self.child_context = context.inside(self.tag)
        self.children: list[tuple[int, etree._Element]] = []
        self.pieces: list[str] = []
        self._collect()
        self._next_child = 0
        self._filling = -1
        self._list_items = 0

    def _collect(self) -> None:
        """Lay out the content: text runs rendered, child elements as empty slots."""
        runs: list[str | etree._Element] = []
        if self.element.text:
            runs.append(self.element.text)
        for child in self.element:
            if isinstance(child.tag, str):
                runs.append(child)
            if child.tail:
                runs.append(child.tail)
        block_inside = self.tag in _BLOCKS
        for index, run in enumerate(runs):
            if not isinstance(run, str):
                if run.tag not in _SKIPPED:
                    self.children.append((len(self.pieces), run))
                self.pieces.append("")
                continue
            before = runs[index - 1] if index else None
            after = runs[index + 1] if index + 1 < len(runs) else None
            self.pieces.append(self._text(run, before, after, block_inside))

    def _text(
        self,
        text: str,
        before: str | etree._Element | None,
        after: str | etree._Element | None,
        block_inside: bool,
    ) -> str:
        """A text run as markdownify renders it, from what is around it."""
        if not text.strip():
            if block_inside and (before is None or after is None):
                return ""
            if _is_block_or_pre(before) or _is_block_or_pre(after):
                return ""
        if not self.child_context.in_pre:
            text = _WHITESPACE_RUNS.sub(" ", text)
        if _is_block_or_pre(before) or (block_inside and before is None):
            text = text.lstrip(" \t\r\n")
        if _is_block_or_pre(after) or (block_inside and after is None):
            text = text.rstrip()
        return text

    def next_child(self) -> _Frame | None:
        """The frame of the next child element to render, or None when all are done."""
        if self._next_child >= len(self.children):
            return None
        self._filling, child = self.children[self._next_child]
        self._next_child += 1
        ordinal = 0
        if child.tag == "li":
            ordinal = self._list_items
            self._list_items += 1
        return _Frame(child, self.child_context, ordinal)

    def fill(self, rendered: str) -> None:
        """Put the text of the child last handed out into its slot."""
        self.pieces[self._filling] = rendered

    def finish(self) -> str:
        """This element's text, once every child is in."""
        strings = [piece for piece in self.pieces if piece]
        text = "".join(strings) if self.child_context.in_pre else _join_collapsed(strings)
        convert = _converter(self.tag)
        return text if convert is None else convert(self, text)


def _render(root: etree._Element) -> str:
    """The text of the tree under ``root``, walked with a stack of frames."""
    stack = [_Frame(root, _TOP, 0)]
    while True:
        frame = stack[-1]
        child = frame.next_child()
        if child is not None:
            stack.append(child)
            continue
        text = frame.finish()
        stack.pop()
        if not stack:
            return text
        stack[-1].fill(text)


def _is_block_or_pre(run: str | etree._Element | None) -> bool:
    """Whether ``run`` is an element around which whitespace is dropped."""
    return run is not None and not isinstance(run, str) and run.tag in _BLOCKS_AND_PRE


def _join_collapsed(strings: list[str]) -> str:
    """Join rendered children, at most one blank line where two of them meet."""
    if len(strings) < 2:
        return strings[0] if strings else ""
    joined: list[str] = [""]
    for string in strings:
        content = string.lstrip("\n")
        leading = "\n" * (len(string) - len(content))
        stripped = content.rstrip("\n")
        trailing = "\n" * (len(content) - len(stripped))
        if joined[-1] and leading:
            leading = "\n" * min(2, max(len(joined.pop()), len(leading)))
        joined += [leading, stripped, trailing]
    return "".join(joined)


# -- Elements ---------------------------------------------------------------------------


def _chomp(text: str) -> tuple[str, str, str]:
    """A space before and after, if the text had one, and the text stripped."""
    prefix = " " if text[:1] == " " else ""
    suffix = " " if text[-1:] == " " else ""
    return prefix, suffix, text.strip()


def _emphasis(marker: str) -> Callable[[_Frame, str], str]:
    """An inline element rendered as its text between ``marker``s."""

    def convert(frame: _Frame, text: str) -> str:
        if frame.context.no_format:
            return text
        prefix, suffix, text = _chomp(text)
        return f"{prefix}{marker}{text}{marker}{suffix}" if text else ""

    return convert


def _link(frame: _Frame, text: str) -> str:
    """``[text](url "title")``; ``<url>`` when the text is the URL."""
    if frame.context.no_format:
        return text
    prefix, suffix, text = _chomp(text)
    if not text:
        return ""
    href = frame.element.get("href")
    title = frame.element.get("title")
    if not href:
        return text
    if text == href and not title:
        return f"<{href}>"
    title_part = ' "{}"'.format(title.replace('"', '\\"')) if title else ""
    return f"{prefix}[{text}]({href}{title_part}){suffix}"


def _code(frame: _Frame, text: str) -> str:
    """Inline code between enough backticks that none inside ends it."""
    if frame.context.no_format:
        return text
    prefix, suffix, text = _chomp(text)
    if not text:
        return ""
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=0)
    if longest:
        text = f" {text} "
    delimiter = "`" * (longest + 1)
    return f"{prefix}{delimiter}{text}{delimiter}{suffix}"


def _blockquote(frame: _Frame, text: str) -> str:
    """Each line behind ``> ``."""
    text = text.strip(" \t\r\n")
    if frame.context.inline:
        return f" {text} "
    if not text:
        return "\n"
    quoted = "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))
    return f"\n{quoted}\n\n"


def _line_break(frame: _Frame, text: str) -> str:
    """A new line; in a heading or a cell, a space."""
    # The two spaces (Markdown's line break, stripped at the end) make the break
    # content, so the blank lines around it collapse as they do around text.
    return " " if frame.context.inline else "  \n"


def _paragraph(frame: _Frame, text: str) -> str:
    """A block between blank lines; in a heading or a cell, spaced inline text."""
    if frame.context.inline:
        return " " + text.strip(" \t\r\n") + " "
    text = text.strip(" \t\r\n")
    return f"\n\n{text}\n\n" if text else ""


def _division(frame: _Frame, text: str) -> str:
    """A ``<div>``, ``<section>`` ...: a block, like a paragraph."""
    if frame.context.inline:
        return " " + text.strip() + " "
    text = text.strip()
    return f"\n\n{text}\n\n" if text else ""


def _heading(frame: _Frame, text: str) -> str:
    """``## Heading`` on a line of its own."""
    if frame.context.inline:
        return text
    text = _WHITESPACE_RUNS.sub(" ", text.strip())
    if not text:
        return ""
    level = max(1, min(6, int(frame.tag[1:])))
    return f"\n\n{'#' * level} {text}\n\n"


def _rule(frame: _Frame, text: str) -> str:
    """A horizontal rule."""
    return "\n\n---\n\n"


def _image(frame: _Frame, text: str) -> str:
    """An image becomes its alt text: its URL is a CID or a tracking pixel."""
    return str(frame.element.get("alt") or "")


def _list(frame: _Frame, text: str) -> str:
    """A list: its items after a blank line; nested, right under its parent item."""
    if frame.context.in_list_item:
        return "\n" + text.rstrip()
    return "\n\n" + text + ("\n" if _paragraph_follows(frame.element) else "")


def _paragraph_follows(element: etree._Element) -> bool:
    """Whether text or an element other than a list comes after ``element``."""
    if element.tail and element.tail.strip():
        return True
    following = element.getnext()
    while following is not None and not isinstance(following.tag, str):
        following = following.getnext()
    return following is not None and following.tag not in ("ul", "ol")


def _list_item(frame: _Frame, text: str) -> str:
    """``- item``, or ``3. item`` in an ordered list, continuation lines indented."""
    text = text.strip()
    if not text:
        return "\n"
    parent = frame.element.getparent()
    if parent is not None and parent.tag == "ol":
        start = str(parent.get("start") or "")
        bullet = f"{(int(start) if start.isdecimal() else 1) + frame.ordinal}. "
    else:
        bullet = "- "
    indent = " " * len(bullet)
    lines = [f"{indent}{line}" if line else "" for line in text.split("\n")]
    return bullet + "\n".join(lines)[len(bullet) :] + "\n"


def _preformatted(frame: _Frame, text: str) -> str:
    """A fenced code block, its text as written."""
    if not text:
        return ""
    text = _PRE_TRAILING.sub("", _PRE_LEADING.sub("", text))
    return f"\n\n```\n{text}\n```\n\n"


def _definition_term(frame: _Frame, text: str) -> str:
    """A ``<dt>`` on a line of its own."""
    text = _WHITESPACE_RUNS.sub(" ", text.strip())
    if frame.context.inline:
        return f" {text} "
    return f"\n\n{text}\n" if text else "\n"


def _definition(frame: _Frame, text: str) -> str:
    """A ``<dd>``: ``:`` and its lines indented by four spaces."""
    text = text.strip()
    if frame.context.inline:
        return f" {text} "
    if not text:
        return "\n"
    indented = "\n".join(f"    {line}" if line else "" for line in text.split("\n"))
    return ":" + indented[1:] + "\n"


def _table(frame: _Frame, text: str) -> str:
    """A table is a block: blank lines around its rows."""
    return "\n\n" + text.strip("\n") + "\n\n"


def _table_row(frame: _Frame, text: str) -> str:
    """A row is one line of cells, without the separator after the last one."""
    row = text.strip()
    if row.endswith(_CELL_SEPARATOR.strip()):
        row = row[: -len(_CELL_SEPARATOR.strip())].rstrip()
    return row + "\n" if row else ""


def _table_cell(frame: _Frame, text: str) -> str:
    """A simple cell is inline text; a cell holding blocks stays a block."""
    cell = text.strip()
    if not cell:
        return ""
    if "\n" in cell:
        return "\n\n" + cell + "\n\n"
    return cell + _CELL_SEPARATOR


def _caption(frame: _Frame, text: str) -> str:
    """A table's caption, a blank line before its rows."""
    return text.strip() + "\n\n"


def _figure_caption(frame: _Frame, text: str) -> str:
    """A figure's caption, a block."""
    return "\n\n" + text.strip() + "\n\n"


def _quotation(frame: _Frame, text: str) -> str:
    """An inline ``<q>`` between quotation marks."""
    return f'"{text}"'


def _nothing(frame: _Frame, text: str) -> str:
    """An element whose content is not shown."""
    return ""


_CONVERTERS: dict[str, Callable[[_Frame, str], str]] = {
    "a": _link,
    "b": _emphasis("**"),
    "strong": _emphasis("**"),
    "em": _emphasis("*"),
    "i": _emphasis("*"),
    "del": _emphasis("~~"),
    "s": _emphasis("~~"),
    "sub": _emphasis(""),
    "sup": _emphasis(""),
    "code": _code,
    "kbd": _code,
    "samp": _code,
    "blockquote": _blockquote,
    "br": _line_break,
    "p": _paragraph,
    "div": _division,
    "article": _division,
    "section": _division,
    "dl": _division,
    "dt": _definition_term,
    "dd": _definition,
    "hr": _rule,
    "img": _image,
    "ul": _list,
    "ol": _list,
    "li": _list_item,
    "pre": _preformatted,
    "q": _quotation,
    "table": _table,
    "tr": _table_row,
    "td": _table_cell,
    "th": _table_cell,
    "caption": _caption,
    "figcaption": _figure_caption,
    **dict.fromkeys(_SKIPPED, _nothing),
}


@functools.lru_cache(maxsize=1024)
def _converter(tag: str) -> Callable[[_Frame, str], str] | None:
    """How a ``tag`` element's text is rendered; None: as it is."""
    if tag in _CONVERTERS:
        return _CONVERTERS[tag]
    return _heading if _HEADING.fullmatch(tag) else None


# -- Past libxml2's depth limit -------------------------------------------------------------


class _TextCollector(HTMLParser):
    """The text of an HTML document, one line per block, without recursion."""

    _LINE_BREAKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a skipped element, or break the line before a block."""
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag in self._LINE_BREAKS or tag == "hr":
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        """Close a skipped element, or break the line after a block."""
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._LINE_BREAKS or tag == "hr":
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        """Keep text outside skipped elements, its whitespace collapsed as HTML does."""
        if not self._skipping:
            self.chunks.append(_WHITESPACE_RUNS.sub(" ", data))


def _flat_text(html: str) -> str:
    """Plain text of an HTML document, for when it nests deeper than libxml2 goes."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = (line.strip() for line in "".join(collector.chunks).split("\n"))
    return "\n".join(lines)
