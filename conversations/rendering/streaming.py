"""Markdown that is still being written: a growing answer split into settled blocks, each
rendered once, and an open tail rendered per update, so the cost of an update follows the
new text and the tail, not the whole answer. No Django.
"""

import re
from collections.abc import Sequence

from conversations.rendering.citations import Citations
from conversations.rendering.markdown import render_markdown

# Streaming. The rule for ending a block is deliberately simpler than CommonMark: a blank line
# outside a fence, followed by a line that starts at column 0 and is not a list item (an
# indented line or a list marker may continue a list or an indented code block).
_BLANK_LINE = re.compile(r"[ \t\r]*")
_LIST_ITEM = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:[ \t\r]|$)")
# Line starts that cannot be classified yet: they may still become blank or a list marker.
_UNDECIDED_START = re.compile(r"[ \t\r]*|[-+*]|\d{1,9}[.)]?")
# Fences may follow blockquote and list markers; a backtick fence's info has no backtick.
_FENCE_OPEN = re.compile(
    r"(?:[ \t]*(?:>|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t])))*[ \t]*(`{3,}|~{3,})(.*)"
)
_FENCE_CLOSE = re.compile(r"[ \t]*(?:>[ \t]*)*(`{3,}|~{3,})[ \t\r]*")
# A link reference definition: its label can be used in any block of the document.
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[", re.MULTILINE)
# Enough of a line's start to tell a list marker (nine digits and a dot) from anything else.
_LINE_HEAD_CHARS = 16


class StreamingMarkdown:
    """Splits a growing answer into settled blocks (rendered once) and an open tail (rendered per
    update), so the cost of an update follows the new text and the tail, not the whole answer.

    Blocks are cut where rendering them apart gives what the whole answer rendered at once
    gives (a list's items stay together), except for reference definitions, which can link
    across blocks; `render_whole` gives the finished answer's HTML either way.
    """

    def __init__(self, citations: Citations | None = None) -> None:
        self.citations = citations  # the documents the answer may cite: links as it renders
        self._chunks: list[str] = []
        self._tail = ""  # text after the last settle point
        self._line_start = 0  # index in the tail of the line not yet ended by a newline
        self._fence: tuple[str, int] | None = None  # marker character and length of an open fence
        self._has_content = False  # the tail has a non-blank line
        self._after_blank = False  # a blank line ended a block; the next line start decides

    @property
    def text(self) -> str:
        joined = "".join(self._chunks)
        self._chunks = [joined]
        return joined

    def feed(self, text: str, *, render_tail: bool = True) -> tuple[list[str], str | None]:
        """Append `text`; return (html of blocks that settled with this feed — each rendered
        once, in order; html of the current open tail). The tail is rendered only when asked
        or when blocks settled (the old tail is then gone); otherwise it comes back None."""
        self._chunks.append(text)
        scan_from = len(self._tail)  # earlier text holds no newline past the current line start
        self._tail += text
        settled: list[str] = []
        while True:
            newline = self._tail.find("\n", scan_from)
            complete = newline != -1
            if complete:
                line = self._tail[self._line_start : newline]
            else:
                line = self._tail[self._line_start : self._line_start + _LINE_HEAD_CHARS]
            if self._after_blank and (verdict := _starts_new_block(line, complete)) is not None:
                self._after_blank = False
                if verdict:
                    cut = self._line_start
                    settled.append(render_markdown(self._tail[:cut], self.citations))
                    self._tail = self._tail[cut:]
                    self._line_start = 0
                    self._has_content = False
                    newline -= cut if complete else 0
            if not complete:
                break
            self._scan_line(line)
            self._line_start = scan_from = newline + 1
        if render_tail or settled:
            return settled, render_markdown(self._tail, self.citations)
        return settled, None

    def render_tail(self) -> str:
        return render_markdown(self._tail, self.citations)

    def render_whole(self, settled_html: Sequence[str], tail_html: str | None = None) -> str:
        """The whole answer's HTML, as `render_markdown(self.text, citations)` gives it, reusing the
        blocks already rendered while streaming (`tail_html`, when given, must be the current
        tail's). Blocks rendered apart match the whole document except where a reference
        definition (`[label]: url`) reaches across blocks; then the answer is rendered whole."""
        text = self.text
        if _REFERENCE_DEFINITION.search(text):
            return render_markdown(text, self.citations)
        if tail_html is None:
            tail_html = render_markdown(self._tail, self.citations)
        return "".join(settled_html) + tail_html

    @property
    def tail_length(self) -> int:
        return len(self._tail)

    def _scan_line(self, line: str) -> None:
        if self._fence:
            close = _FENCE_CLOSE.fullmatch(line)
            marker, length = self._fence
            if close and close[1][0] == marker and len(close[1]) >= length:
                self._fence = None
            return
        if _BLANK_LINE.fullmatch(line):
            self._after_blank = self._has_content
            return
        self._has_content = True
        opening = _FENCE_OPEN.match(line)
        if opening and not (opening[1][0] == "`" and "`" in opening[2]):
            self._fence = (opening[1][0], len(opening[1]))


def _starts_new_block(line: str, complete: bool) -> bool | None:
    """Whether the line after a blank line starts a new block; None while that is unknown."""
    if _BLANK_LINE.fullmatch(line) or (not complete and _UNDECIDED_START.fullmatch(line)):
        return None
    return line[0] not in " \t" and not _LIST_ITEM.match(line)
