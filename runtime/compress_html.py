"""An HTML page read as its text, for the compressor: a fetched web page is mostly markup (tags,
attributes, scripts, styles), which costs tokens and answers nothing. :func:`html_text` keeps
what a reader sees, in the form the prose strategy reads: headings as Markdown headings
(``## Title``: anchors), list items as ``- item``, links as ``[text](href)`` (where they
lead; not an anchor in the page), a table's cells joined by `` | ``,
preformatted blocks fenced (```` ``` ````) with their lines as written, the rest a line per
block (paragraph, list item, row, ``<br>``), the title as a heading. Scripts, styles,
templates and SVG are left out; character references are decoded. The compressor's output for a
page is this text, not HTML.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hgroup", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul"})
SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
CELLS = frozenset({"td", "th"})
_SPACE_RE = re.compile(r"\s+")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._prefix = ""
        self._skip: list[str] = []  # the skipped elements open
        self._pre = 0
        self._lists = 0
        self._cells = 0  # cells written on the row so far
        self._links: list[tuple[int, str]] = []  # open links: where their text starts, href

    def _flush(self) -> None:
        text = "".join(self._line).strip()
        if text:
            self.lines.append(self._prefix + text)
        self._line, self._prefix = [], ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in SKIP:
            self._skip.append(tag)
            return
        if self._skip:
            return
        if tag == "br":
            if self._pre:
                self._line.append("\n")
            else:
                self._flush()
            return
        if tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            self._links.append((len(self._line), href))
            return
        if tag in CELLS:
            if self._cells:
                self._line.append(" | ")
            self._cells += 1
            return
        if tag in BLOCK:
            self._flush()
        if tag == "tr":
            self._cells = 0
        elif tag in ("ul", "ol"):
            self._lists += 1
        elif tag == "li":
            self._prefix = "  " * max(0, self._lists - 1) + "- "
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.lines.append("")
            self._prefix = "#" * int(tag[1]) + " "
        elif tag == "title":
            self._prefix = "# "
        elif tag == "pre":
            self.lines.append("```")
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP:
            if self._skip and self._skip[-1] == tag:
                self._skip.pop()
            return
        if self._skip or tag in CELLS:
            return
        if tag == "a":
            if self._links:
                self._link(*self._links.pop())
            return
        if tag == "pre" and self._pre:
            text = "".join(self._line).strip("\n")
            self._line, self._prefix = [], ""
            self._pre -= 1
            if text.strip():
                self.lines.extend(text.split("\n") + ["```"])
            elif self.lines and self.lines[-1] == "```":  # an empty block: no fences
                self.lines.pop()
            return
        if tag in ("ul", "ol"):
            self._lists = max(0, self._lists - 1)
        if tag in BLOCK:
            self._flush()

    def _link(self, start: int, href: str) -> None:
        """A link's text as ``[text](href)``: where it leads is often what is asked (not an
        anchor in the page, a script, or a link whose text is its address)."""
        if (start > len(self._line) or self._pre or not href or href.startswith("#")
                or href.lower().startswith("javascript:")):
            return
        text = "".join(self._line[start:]).strip()
        if text and text != href:
            self._line[start:] = [f"[{text}]({href})"]

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._line.append(data if self._pre else _SPACE_RE.sub(" ", data))

    def text(self) -> str:
        self._flush()
        out: list[str] = []
        for ln in self.lines:  # at most one blank line in a row, none first
            if ln or (out and out[-1]):
                out.append(ln)
        return "\n".join(out).strip("\n")


def html_text(html: str) -> str:
    """The text of an HTML page (see the module docstring)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return parser.text()


HTML_RE = re.compile(r"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])",
                     re.I | re.S)


def htmlish(text: str) -> bool:
    """An HTML document: its doctype or ``<html>`` first (comments aside)."""
    return bool(HTML_RE.match(text[:4000]))


__all__ = ["html_text", "htmlish"]
