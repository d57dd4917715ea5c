"""HTML to plain text with the stdlib tokenizer: nothing from the HTML is executed or kept.

Scripts, styles and the head are dropped, block elements end lines, entities are decoded,
and <blockquote> content is prefixed with "> " so quote splitting treats HTML replies like
plain-text ones.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "object"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr"})
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
_MANY_BLANKS = re.compile(r"\n{3,}")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.quote_depth = 0
        self.pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
        elif tag in _BLOCK:
            self._break()
            self.quote_depth += tag == "blockquote"
            self.pre_depth += tag == "pre"
            if tag == "li":
                self.current.append("- ")
        elif tag == "td" and self.current:
            self.current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _BLOCK and tag not in _VOID:
            self._break()
            if tag == "blockquote":
                self.quote_depth = max(0, self.quote_depth - 1)
            elif tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            first, *rest = data.split("\n")
            self.current.append(first)
            for line in rest:
                self._break(keep_blank=True)
                self.current.append(line)
            return
        self.current.append(_SPACES.sub(" ", data))

    def _break(self, *, keep_blank: bool = False) -> None:
        line = "".join(self.current) if self.pre_depth else "".join(self.current).strip()
        self.current = []
        if not line and not keep_blank:
            if self.lines and self.lines[-1] != "":
                self.lines.append("")
            return
        prefix = "> " * self.quote_depth
        self.lines.append(prefix + line if line else prefix.rstrip())

    def text(self) -> str:
        self._break()
        joined = "\n".join(line.rstrip() for line in self.lines)
        return _MANY_BLANKS.sub("\n\n", joined).strip("\n")


def html_to_text(markup: str) -> str:
    """The readable text of an HTML document or fragment."""
    converter = _Converter()
    try:
        converter.feed(markup)
        converter.close()
    except Exception:  # the tokenizer may assert on hostile markup
        return _strip_tags(markup)
    return converter.text()


_TAG = re.compile(r"<[^>]*>")
_SCRIPTS = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def _strip_tags(markup: str) -> str:
    text = _TAG.sub(" ", _SCRIPTS.sub(" ", markup))
    return _SPACES.sub(" ", html.unescape(text)).strip()
