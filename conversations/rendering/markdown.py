"""Model answers are untrusted input: this module turns their markdown into HTML that is safe to
insert into our pages, on the server, with no Django in sight.

Two layers, so one mistake is not enough for an attack: our renderer never passes raw HTML
through (it shows as text), writes every tag itself and renders code blocks, links and images
our way; nh3 (Rust's ammonia) then keeps only an allow-list of tags, attributes, classes and URL
schemes. No inline style survives, because our Content-Security-Policy forbids them
(`style-src 'self'`); highlighting uses classes styled by `static/css/highlight.css`.

Markdown is parsed by pulldown-cmark (Rust, through pyromark): CommonMark with GitHub's tables
and strikethrough, in linear time on any input. It hands us a flat list of events, which
`_html` turns into HTML. Rendering runs for every open block of every streaming answer, and
markdown-it-py, which did it before, was the largest single piece of the relay's CPU
(docs/performance.md); this is about twenty times faster.

No image from another host may load: an `<img>` fetch would leak the conversation to whoever
the model (or a prompt injection) chose. Only same-origin paths stay images; anything else
becomes a link the user can choose to follow.

Citations of the documents a request carried become links here, as the text is written out
(rendering/citations.py); streaming answers are rendered by rendering/streaming.py.

Over 400 lines (429): the event writer and the sanitizer's allow-lists describe the same
set of tags, and are checked against each other when either changes.
"""

import functools
import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

import nh3
import pyromark
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from conversations.rendering.citations import Citations

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

# Links keep their target only with one of these schemes, or none (a relative URL). Browsers
# drop tabs, newlines and leading spaces before reading a scheme, so those are ignored here too.
_LINK_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LINK_SCHEMES = {"http", "https", "mailto"}
_IGNORED_IN_URL = re.compile(r"[\x00-\x20]")

# What a link's URL keeps as it is; anything else is percent-encoded, as CommonMark's reference
# renderer does (an existing %XX stays).
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"

_ALLOWED_CLASSES: dict[str, re.Pattern[str]] = {
    "div": re.compile(r"code-block|code-head"),
    "span": re.compile(r"code-lang|blocked-image|" + HIGHLIGHT_CLASS_PREFIX + r"[\w-]+"),
    "button": re.compile(r"copy-code"),
    "code": re.compile(r"language-[A-Za-z0-9_+#.-]+"),
    "a": re.compile(r"blocked-image|cite"),
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
    "a": {"href", "title", "class", "data-document", "data-page"},
    "pre": {"tabindex", "role", "aria-label"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"class"},
    "td": {"class"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "button": {"type", "class", "aria-label"},
}

# An answer sits under the page's own headings (the page's h1, each message's h2): its `#`
# becomes h3, and deeper levels follow, down to h6.
_HEADING_SHIFT = 2

# How much of a code block's first line names its Copy button and its scrolling box.
_CODE_NAME_CHARS = 40

_FORMATTER = HtmlFormatter(nowrap=True, classprefix=HIGHLIGHT_CLASS_PREFIX)


def render_markdown(text: str, citations: Citations | None = None) -> str:
    """Markdown from the model to sanitized HTML, ready to insert as is; with `citations`,
    its citations of those documents' pages are links."""
    return _SANITIZER.clean(_html(text, citations))


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
    if tag == "pre" and attribute == "tabindex":
        return "0"
    if tag == "pre" and attribute == "role":
        return "group"
    return value


# Built once: handing nh3 its allow-lists on every call cost more than the cleaning.
_SANITIZER = nh3.Cleaner(
    tags=_TAGS,
    attributes=_ATTRIBUTES,
    attribute_filter=_filter_attribute,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    set_tag_attribute_values={"a": {"target": "_blank"}},
)

_PARSE_OPTIONS = pyromark.Options.ENABLE_TABLES | pyromark.Options.ENABLE_STRIKETHROUGH

# Tags of the events that carry no data, as they open and as they close.
_OPEN = {
    "Paragraph": "<p>",
    "Emphasis": "<em>",
    "Strong": "<strong>",
    "Strikethrough": "<s>",
    "Item": "<li>",
    "TableHead": "<thead>\n<tr>\n",
    "HtmlBlock": "<p>",  # raw HTML is shown as the text it is, in a paragraph of its own
}
_CLOSE = {
    "Paragraph": "</p>\n",
    "Emphasis": "</em>",
    "Strong": "</strong>",
    "Strikethrough": "</s>",
    "Item": "</li>\n",
    "TableHead": "</tr>\n</thead>\n",
    "TableRow": "</tr>\n",
    "BlockQuote": "</blockquote>\n",
    "HtmlBlock": "</p>\n",
}
# Elements nested deeper than this keep their text and lose their tags. pulldown-cmark has
# no limit of its own, and the sanitizer's HTML parser takes time that grows with the square
# of the nesting: a model writing `> > > …` ten thousand times would stall the server.
_MAX_NESTING = 32

# What every piece of raw HTML starts with (a tag, a closing tag, a comment, a declaration,
# a processing instruction); `a < b` and `x<1` are not.
_HTML_START = re.compile(r"<[A-Za-z/!?]")

# How many times at most raw HTML is escaped and a text parsed again (see _events).
_HTML_PASSES = 4

_LEAF = {"SoftBreak": "\n", "HardBreak": "<br>\n", "Rule": "<hr>\n"}
_BLOCKS = {"CodeBlock", "Heading", "List", "BlockQuote", "Table"}
_ALIGN = {
    "Left": ' class="align-left"',
    "Center": ' class="align-center"',
    "Right": ' class="align-right"',
}


class _Image:
    """An image whose alt text is being collected (its events up to its end)."""

    def __init__(self, spec: dict[str, str], inside_link: bool) -> None:
        self.spec, self.inside_link = spec, inside_link
        self.alt: list[str] = []
        self.depth = 1  # images nested in its alt text end before it does


def _html(text: str, citations: Citations | None = None) -> str:
    """HTML for markdown, every tag written here: pulldown-cmark's events, in order. With
    `citations`, the text between tags (outside code and links) is gathered across events
    (pulldown-cmark splits it at brackets) and linked by `citations` as it is escaped."""
    out: list[str] = []
    write = out.append
    prose: list[str] = []  # text waiting for its citations to be linked
    code: list[str] | None = None  # the text of an open code block
    info = ""
    image: _Image | None = None
    links: list[str] = []  # how each link open around the current event ends
    aligns: Sequence[str] = ()
    cell = 0
    in_head = in_body = False
    depth = 0  # elements open around the current event
    for event in _events(text):
        if type(event) is str:  # SoftBreak, HardBreak, Rule
            if image is not None:
                continue
            if prose:
                if event == "SoftBreak":
                    prose.append("\n")
                    continue
                write(citations.link("".join(prose)))
                prose.clear()
            write(_LEAF.get(event, ""))
            continue
        ((kind, value),) = event.items()
        if prose and (kind != "Text" or code is not None or image is not None):
            write(citations.link("".join(prose)))
            prose.clear()
        if image is not None:
            if kind in ("Text", "Code"):
                image.alt.append(value)
            elif kind == "Start" and type(value) is dict and "Image" in value:
                image.depth += 1
            elif kind == "End" and value == "Image":
                image.depth -= 1
                if not image.depth:
                    write(
                        _image_html(image.spec, "".join(image.alt), inside_link=image.inside_link)
                    )
                    image = None
            continue
        if kind == "Text":
            if code is not None:
                code.append(value)
            elif citations is not None and not links:
                prose.append(value)
            else:
                write(escape(value, quote=False))
        elif kind == "Code":
            write(f"<code>{escape(value, quote=False)}</code>")
        elif kind in ("Html", "InlineHtml"):
            write(escape(value, quote=False))
        elif kind == "Start":
            if type(value) is dict and "Image" in value:
                image = _Image(value["Image"], inside_link=bool(links))
                continue
            depth += 1
            if depth > _MAX_NESTING and not (type(value) is dict and "CodeBlock" in value):
                continue  # deeper than anyone reads: the text stays, the markup goes
            if type(value) is str:
                if value == "TableRow":
                    write("<tr>\n" if in_body else "<tbody>\n<tr>\n")
                    cell, in_body = 0, True
                elif value == "TableCell":
                    write(f"<{'th' if in_head else 'td'}{_ALIGN.get(aligns[cell], '')}>")
                    cell += 1
                else:
                    write(_OPEN.get(value, ""))
                    if value == "TableHead":
                        in_head, cell = True, 0
                continue
            ((name, spec),) = value.items()
            if name in _BLOCKS and out and out[-1][-1] != "\n":  # after a tight item's text
                write("\n")
            if name == "CodeBlock":
                code, info = [], spec["Fenced"] if type(spec) is dict else ""
            elif name == "Heading":
                write(f"<{_heading(spec['level'])}>")
            elif name == "List":
                write(
                    "<ul>\n"
                    if spec is None
                    else "<ol>\n"
                    if spec == 1
                    else f'<ol start="{spec}">\n'
                )
            elif name == "BlockQuote":
                write("<blockquote>\n")
            elif name == "Link":
                opening = _link_open(spec)
                write(opening)
                links.append("</a>" if opening else "")
            elif name == "Table":
                aligns = spec
                write("<table>\n")
        elif kind == "End":
            depth -= 1
            if depth >= _MAX_NESTING and value != "CodeBlock":
                continue
            if type(value) is str:
                if value == "CodeBlock":
                    write(_code_block_html("".join(code or ()), info))
                    code = None
                elif value == "TableHead":
                    write(_CLOSE[value])
                    in_head = False
                elif value == "TableCell":
                    write("</th>\n" if in_head else "</td>\n")
                elif value == "Table":
                    write("</tbody>\n</table>\n" if in_body else "</table>\n")
                    in_body = False
                elif value == "Link":
                    write(links.pop())
                else:
                    write(_CLOSE.get(value, ""))
                continue
            ((name, spec),) = value.items()
            if name == "Heading":
                write(f"</{_heading(spec)}>\n")
            elif name == "List":
                write("</ol>\n" if spec else "</ul>\n")
            elif name == "BlockQuote":
                write("</blockquote>\n")
    if prose:
        write(citations.link("".join(prose)))
    return "".join(out)


def _heading(level: str) -> str:
    """The tag for a markdown heading level ("H1"), moved under the page's own headings."""
    return f"h{min(int(level[1:]) + _HEADING_SHIFT, 6)}"


def _events(text: str) -> Iterable[Any]:
    """pulldown-cmark's events for `text`, with raw HTML read as the text it is, as CommonMark
    reads it with HTML off. pulldown-cmark always recognises HTML, and an HTML block would take
    the lines after it along as raw text (a line like `1. <your name>` does), so each `<` that
    starts HTML is escaped with a backslash and the text parsed again (an HTML block's lines are
    markdown again then, and may hold inline HTML: hence the loop). Whatever HTML is left after
    the last pass is shown as text by `_html`."""
    if not _HTML_START.search(text):  # no HTML can start here: no need for the places
        return pyromark.events(text, options=_PARSE_OPTIONS)
    events = list(pyromark.events_with_range(text, options=_PARSE_OPTIONS))
    for _ in range(_HTML_PASSES):
        starts = [
            place["start"]
            for event, place in events
            if type(event) is dict and ("InlineHtml" in event or event.get("Start") == "HtmlBlock")
        ]
        if not starts:
            break
        source = text.encode()  # the places are byte offsets
        pieces, done = [], 0
        for start in starts:
            at = source.index(b"<", start)
            pieces += (source[done:at], b"\\")
            done = at
        text = (b"".join(pieces) + source[done:]).decode()
        events = list(pyromark.events_with_range(text, options=_PARSE_OPTIONS))
    return [event for event, _ in events]


def _link_open(spec: dict[str, str]) -> str:
    """A link's opening tag; "" for a URL with a scheme we do not link to (javascript:,
    data: ...), whose text is then shown plain."""
    url = spec["dest_url"]
    if spec["link_type"] == "Email":
        url = f"mailto:{url}"
    if not _link_allowed(url):
        return ""
    title = f' title="{escape(spec["title"])}"' if spec["title"] else ""
    return f'<a href="{escape(quote(url, safe=_URL_SAFE))}"{title}>'


def _link_allowed(url: str) -> bool:
    scheme = _LINK_SCHEME.match(_IGNORED_IN_URL.sub("", url))
    return scheme is None or scheme[1].lower() in _LINK_SCHEMES


def _image_html(spec: dict[str, str], alt: str, *, inside_link: bool) -> str:
    src = quote(spec["dest_url"], safe=_URL_SAFE)
    if _SAME_ORIGIN_PATH.fullmatch(src):
        title = f' title="{escape(spec["title"])}"' if spec["title"] else ""
        return f'<img src="{escape(src)}" alt="{escape(alt)}"{title}>'
    label = escape(f"[image: {alt}]" if alt else "[image]")
    # Inside a link, a second <a> would nest; there the label alone is enough.
    if inside_link or not _LINKABLE_URL.match(src):
        return f'<span class="blocked-image">{label}</span>'
    return f'<a href="{escape(src)}" class="blocked-image">{label}</a>'


def _code_block_html(code: str, info: str) -> str:
    language = info.split(maxsplit=1)[0] if info.strip() else ""
    if not _LANGUAGE_NAME.fullmatch(language):
        language = ""
    code_class = f' class="language-{language}"' if language else ""
    # Named by language and first line, so a list of an answer's buttons tells them apart;
    # the box can take focus, so a keyboard scrolls a line wider than the answer.
    kind = f"{language} code" if language else "code"
    first = next((line.strip() for line in code.splitlines() if line.strip()), "")
    if len(first) > _CODE_NAME_CHARS:
        first = first[: _CODE_NAME_CHARS - 1] + "…"
    name = escape(f"{kind}: {first}" if first else kind)
    return (
        '<div class="code-block"><div class="code-head">'
        f'<span class="code-lang">{escape(language or "text")}</span>'
        f'<button type="button" class="copy-code" aria-label="Copy {name}">Copy</button></div>'
        f'<pre tabindex="0" role="group" aria-label="{escape(kind)}">'
        f"<code{code_class}>{_highlight(code, language)}</code></pre></div>\n"
    )


def _highlight(code: str, language: str) -> str:
    if not language or len(code) > _HIGHLIGHT_MAX_CHARS:
        return escape(code, quote=False)
    lexer = _lexer(language.lower())
    if lexer is None:
        return escape(code, quote=False)
    return highlight(code, lexer, _FORMATTER)


@functools.lru_cache(maxsize=128)
def _lexer(language: str) -> Lexer | None:
    """Finding a lexer by name searches every lexer Pygments has: done once per language,
    not once per render of a streaming code block."""
    try:
        return get_lexer_by_name(language, stripnl=False)
    except ClassNotFound:
        return None
