"""Model answers are untrusted input: this module turns their markdown into HTML that is safe to
insert into our pages, on the server, with no Django in sight.

Two layers, so one mistake is not enough for an attack: markdown-it never passes raw HTML through
and renders code blocks and images our way; nh3 (Rust's ammonia) then keeps only an allow-list
of tags, attributes, classes and URL schemes. No inline style survives, because our
Content-Security-Policy forbids them (`style-src 'self'`); highlighting uses classes styled by
`static/css/highlight.css`.

No image from another host may load: an `<img>` fetch would leak the conversation to whoever
the model (or a prompt injection) chose. Only same-origin paths stay images; anything else
becomes a link the user can choose to follow.

`StreamingMarkdown` serves the streaming view: settled blocks are rendered once, only the open
tail is re-rendered per update.
"""

import functools
import re
from collections.abc import Sequence

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = ["StreamingMarkdown", "render_markdown"]

# Token classes carry this prefix so they cannot collide with the site's own class names.
HIGHLIGHT_CLASS_PREFIX = "hl-"

# Pygments is slow on huge inputs and the open tail is re-rendered per update while streaming;
# past this size a block is shown plain.
_HIGHLIGHT_MAX_CHARS = 50_000

# A fence's info string is untrusted: only a plain language name reaches a class or a label.
_LANGUAGE_NAME = re.compile(r"[A-Za-z0-9_+#.-]{1,40}")

# A same-origin path: one leading slash, and nothing a browser would read as `//host`
# (a second slash or a backslash, also after it drops tabs and newlines).
_SAME_ORIGIN_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\\]*")

# Blocked images from these URLs become links; other schemes (data:, ...) become plain text.
_LINKABLE_URL = re.compile(r"(?:https?:)?//", re.IGNORECASE)

_ALLOWED_CLASSES: dict[str, re.Pattern[str]] = {
    "div": re.compile(r"code-block|code-head"),
    "span": re.compile(r"code-lang|blocked-image|" + HIGHLIGHT_CLASS_PREFIX + r"[\w-]+"),
    "button": re.compile(r"copy-code"),
    "code": re.compile(r"language-[A-Za-z0-9_+#.-]+"),
    "a": re.compile(r"blocked-image"),
    "th": re.compile(r"align-(?:left|center|right)"),
    "td": re.compile(r"align-(?:left|center|right)"),
}

_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "blockquote",
    "em", "strong", "del", "s", "a", "img",
    "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td",
    "pre", "code", "span", "div", "button",
}  # fmt: skip

_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"class"},
    "td": {"class"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "button": {"type", "class"},
}

_FORMATTER = HtmlFormatter(nowrap=True, classprefix=HIGHLIGHT_CLASS_PREFIX)


def render_markdown(text: str) -> str:
    """Markdown from the model to sanitized HTML, ready to insert as is."""
    return nh3.clean(
        _MARKDOWN.render(text),
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """nh3's last word on each attribute: the second line of defence behind the image rule,
    and the class allow-list (ammonia's own cannot express the highlighter's class family)."""
    if tag == "img" and attribute == "src":
        return value if _SAME_ORIGIN_PATH.fullmatch(value) else None
    if attribute == "class":
        allowed = _ALLOWED_CLASSES.get(tag)
        kept = [name for name in value.split() if allowed and allowed.fullmatch(name)]
        return " ".join(kept) or None
    if tag == "button" and attribute == "type":
        return "button"
    return value


def _code_block_html(code: str, info: str) -> str:
    language = info.split(maxsplit=1)[0] if info.strip() else ""
    if not _LANGUAGE_NAME.fullmatch(language):
        language = ""
    code_class = f' class="language-{language}"' if language else ""
    return (
        '<div class="code-block"><div class="code-head">'
        f'<span class="code-lang">{escapeHtml(language or "text")}</span>'
        '<button type="button" class="copy-code">Copy</button></div>'
        f"<pre><code{code_class}>{_highlight(code, language)}</code></pre></div>\n"
    )


def _highlight(code: str, language: str) -> str:
    if not language or len(code) > _HIGHLIGHT_MAX_CHARS:
        return escapeHtml(code)
    lexer = _lexer(language.lower())
    if lexer is None:
        return escapeHtml(code)
    return highlight(code, lexer, _FORMATTER)


@functools.lru_cache(maxsize=128)
def _lexer(language: str) -> Lexer | None:
    """Finding a lexer by name searches every lexer Pygments has: done once per language,
    not once per render of a streaming code block."""
    try:
        return get_lexer_by_name(language, stripnl=False)
    except ClassNotFound:
        return None


def _render_fence(
    renderer: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    token = tokens[idx]
    return _code_block_html(token.content, unescapeAll(token.info).strip())


def _render_code_block(
    renderer: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    return _code_block_html(tokens[idx].content, "")


def _render_image(
    renderer: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if _SAME_ORIGIN_PATH.fullmatch(src):
        return renderer.image(tokens, idx, options, env)
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    label = escapeHtml(f"[image: {alt}]" if alt else "[image]")
    link_depth = sum((t.type == "link_open") - (t.type == "link_close") for t in tokens[:idx])
    # Inside a link, a second <a> would nest; there the label alone is enough.
    if link_depth or not _LINKABLE_URL.match(src):
        return f'<span class="blocked-image">{label}</span>'
    return f'<a href="{escapeHtml(src)}" class="blocked-image">{label}</a>'


def _table_alignment_classes(state: StateCore) -> None:
    """Column alignment as a class: markdown-it writes it as an inline style, which our CSP
    would refuse and nh3 strips."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            alignment = str(token.attrs.pop("style")).removeprefix("text-align:")
            token.attrSet("class", f"align-{alignment}")


_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_MARKDOWN.add_render_rule("fence", _render_fence)
_MARKDOWN.add_render_rule("code_block", _render_code_block)
_MARKDOWN.add_render_rule("image", _render_image)
_MARKDOWN.core.ruler.push("table_alignment_classes", _table_alignment_classes)


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

    def __init__(self) -> None:
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
                    settled.append(render_markdown(self._tail[:cut]))
                    self._tail = self._tail[cut:]
                    self._line_start = 0
                    self._has_content = False
                    newline -= cut if complete else 0
            if not complete:
                break
            self._scan_line(line)
            self._line_start = scan_from = newline + 1
        return settled, render_markdown(self._tail) if render_tail or settled else None

    def render_tail(self) -> str:
        return render_markdown(self._tail)

    def render_whole(self, settled_html: Sequence[str], tail_html: str | None = None) -> str:
        """The whole answer's HTML, as `render_markdown(self.text)` gives it, reusing the
        blocks already rendered while streaming (`tail_html`, when given, must be the current
        tail's). Blocks rendered apart match the whole document except where a reference
        definition (`[label]: url`) reaches across blocks; then the answer is rendered whole."""
        text = self.text
        if _REFERENCE_DEFINITION.search(text):
            return render_markdown(text)
        if tail_html is None:
            tail_html = render_markdown(self._tail)
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
