"""HTML mail bodies as readable text: markdownify, tuned for mail.

Agents read this text, so it keeps what carries meaning (paragraphs, lists, links as
``[text](url)``, headings, emphasis) and drops what does not: scripts, styles, the
``<head>``, tracking pixels and the invisible characters that newsletters pad their
preview text with. Mail HTML lays itself out with nested tables; rendering those as
Markdown tables would bury the text in pipes, so a table row becomes one line of its
non-empty cells, and a cell that holds blocks (a nested table, paragraphs) stays a block.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from markdownify import ATX, STRIP, MarkdownConverter

__all__ = ["html_to_text"]

# Characters with no visible width that marketing mail repeats hundreds of times
# (zero-width space, BOM, combining grapheme joiner, soft hyphen). U+200C and U+200D are
# kept: they change how Persian, Indic scripts and emoji render.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\ufeff\u034f\u00ad"), None)
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_WHITESPACE_RUNS = re.compile(r"\s+")
_CELL_SEPARATOR = " | "


class _MailConverter(MarkdownConverter):
    """markdownify's converter with mail-friendly images and tables."""

    class Options(MarkdownConverter.DefaultOptions):
        heading_style = ATX
        bullets = "-"
        escape_asterisks = False
        escape_underscores = False
        strip_document = STRIP
        # In HTML a newline in text is a space; "wrap" without a width says just that.
        wrap = True
        wrap_width = None

    def convert_img(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        """An image becomes its alt text: its URL is a CID or a tracking pixel."""
        return str(el.attrs.get("alt") or "")

    def convert_head(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        """The ``<head>`` (title, meta, styles) is not part of what the mail says."""
        return ""

    convert_title = convert_head

    def convert_table(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        """A table is a block: blank lines around its rows."""
        return "\n\n" + text.strip("\n") + "\n\n"

    def convert_tr(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        """A row is one line of cells, without the separator after the last one."""
        row = text.strip()
        if row.endswith(_CELL_SEPARATOR.strip()):
            row = row[: -len(_CELL_SEPARATOR.strip())].rstrip()
        return row + "\n" if row else ""

    def convert_td(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        """A simple cell is inline text; a cell holding blocks stays a block."""
        cell = text.strip()
        if not cell:
            return ""
        if "\n" in cell:
            return "\n\n" + cell + "\n\n"
        return cell + _CELL_SEPARATOR

    convert_th = convert_td

    def convert_thead(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        """Table sections add nothing of their own."""
        return text

    convert_tbody = convert_thead
    convert_tfoot = convert_thead


_CONVERTER = _MailConverter()


def html_to_text(html: str) -> str:
    """Convert an HTML mail body to readable Markdown-flavoured text.

    Links stay as ``[text](url)``, entities are decoded, ``<script>``, ``<style>`` and
    ``<head>`` content is dropped, trailing spaces are stripped and runs of blank lines
    collapse to one. Never raises on malformed HTML (BeautifulSoup repairs it).

    :param html: the decoded HTML text.
    :return: the text, without leading or trailing blank lines.
    """
    try:
        text = _CONVERTER.convert(html)
    except RecursionError:
        # markdownify recurses once per nesting level, and broken or hostile HTML
        # nests thousands deep; its text without Markdown is still worth reading.
        text = _flat_text(html)
    return normalize_whitespace(text.translate(_INVISIBLE).replace("\u00a0", " "))


class _TextCollector(HTMLParser):
    """The text of an HTML document, one line per block, without recursion."""

    _SKIPPED = frozenset({"script", "style", "head", "title"})
    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a skipped element, or break the line before a block."""
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        """Close a skipped element, or break the line after a block."""
        if tag in self._SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        """Keep text outside skipped elements, its whitespace collapsed as HTML does."""
        if not self._skipping:
            self.chunks.append(_WHITESPACE_RUNS.sub(" ", data))


def _flat_text(html: str) -> str:
    """Plain text of an HTML document, for when markdownify cannot convert it."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = (line.strip() for line in "".join(collector.chunks).split("\n"))
    return "\n".join(lines)


def normalize_whitespace(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines to one.

    Spaces inside a line are kept: in ``<pre>`` text and Markdown indentation they mean
    something.

    :param text: text with ``\\n`` line ends.
    :return: the normalized text, stripped of blank lines at both ends.
    """
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")
