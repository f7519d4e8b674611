"""Markdown from the model becomes safe HTML; streaming renders each settled block once.

Pure functions: no database and no Django settings are needed.
"""

import random
import re
from html.parser import HTMLParser

import pytest

from conversations.rendering import StreamingMarkdown, render_markdown, streaming
from conversations.rendering import markdown as rendering

SAME_ORIGIN_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\\]*")
UNSAFE_TAGS = {
    *("script", "iframe", "frame", "object", "embed", "svg", "math", "form", "input"),
    *("textarea", "style", "link", "meta", "base", "video", "audio", "source"),
}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {name: value or "" for name, value in attrs}))


def elements(html):
    """(tag, attributes) of every element, entities decoded as a browser would."""
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def tags(html):
    return [tag for tag, _ in elements(html)]


def assert_inert(html):
    for tag, attrs in elements(html):
        assert tag not in UNSAFE_TAGS, html
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            assert name != "style", html
            if name in ("href", "src"):
                # Browsers drop control characters and spaces before reading the scheme.
                url = re.sub(r"[\x00-\x20]", "", value).lower()
                assert not url.startswith(("javascript:", "data:", "vbscript:")), html
        if tag == "img" and "src" in attrs:
            assert SAME_ORIGIN_PATH.fullmatch(attrs["src"]), html


# Markdown features.


def test_render_headings_sit_under_the_pages_own_headings():
    """The page's title is its h1 and each message's author an h2: an answer's `#` is an h3,
    so a screen reader's heading list shows the answer's outline inside its message."""
    html = render_markdown("# One\n\n## Two\n\n### Three\n\n###### Six")

    assert tags(html) == ["h3", "h4", "h5", "h6"]


def test_render_lists_keep_order_and_start():
    html = render_markdown("- a\n- b\n\n3. c\n4. d")

    assert tags(html) == ["ul", "li", "li", "ol", "li", "li"]
    assert ("ol", {"start": "3"}) in elements(html)


def test_render_table_alignment_becomes_class_not_style():
    html = render_markdown("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")

    assert [attrs.get("class") for tag, attrs in elements(html) if tag == "th"] == [
        "align-left",
        "align-center",
        "align-right",
    ]
    assert "style" not in html


def test_render_link_opens_in_new_tab_without_opener():
    html = render_markdown('[docs](https://example.org/a?b=1 "Title")')

    assert elements(html) == [
        ("p", {}),
        (
            "a",
            {
                "href": "https://example.org/a?b=1",
                "title": "Title",
                "target": "_blank",
                "rel": "noopener noreferrer nofollow",
            },
        ),
    ]


def test_render_mailto_link_is_kept():
    html = render_markdown("[mail](mailto:a@example.org)")

    assert elements(html)[1][1]["href"] == "mailto:a@example.org"


def test_render_emphasis_and_strikethrough():
    html = render_markdown("*em* **strong** ~~gone~~")

    assert tags(html) == ["p", "em", "strong", "s"]


def test_render_inline_code_is_escaped():
    html = render_markdown("use `<b>&amp;` here")

    assert html == "<p>use <code>&lt;b&gt;&amp;amp;</code> here</p>\n"


def test_render_fenced_code_is_highlighted_with_copy_button():
    html = render_markdown("```python\nimport os\n```")

    assert html.startswith(
        '<div class="code-block"><div class="code-head"><span class="code-lang">python</span>'
        '<button type="button" class="copy-code" aria-label="Copy python code: import os">'
        'Copy</button></div><pre tabindex="0" role="group" aria-label="python code">'
        '<code class="language-python"><span class="hl-kn">import</span>'
    )
    assert html.endswith("</code></pre></div>\n")
    assert "style" not in html


def test_render_fenced_code_without_language_is_plain_text():
    html = render_markdown("```\n<b>x</b>\n```")

    assert '<span class="code-lang">text</span>' in html
    assert 'aria-label="Copy code: &lt;b&gt;x&lt;/b&gt;"' in html
    assert '<pre tabindex="0" role="group" aria-label="code">' in html
    assert "<code>&lt;b&gt;x&lt;/b&gt;\n</code></pre>" in html


def test_render_fenced_code_unknown_language_is_escaped_unhighlighted():
    html = render_markdown("```nosuchlang\n<b>x</b>\n```")

    assert '<code class="language-nosuchlang">&lt;b&gt;x&lt;/b&gt;\n</code>' in html
    assert "hl-" not in html


def test_render_indented_code_gets_the_same_frame():
    html = render_markdown("    x = 1")

    assert tags(html) == ["div", "div", "span", "button", "pre", "code"]


def test_render_raw_html_is_shown_as_text():
    html = render_markdown("<b>bold</b>")

    assert html == "<p>&lt;b&gt;bold&lt;/b&gt;</p>\n"


def test_render_raw_html_block_leaves_the_markdown_after_it_alone():
    # CommonMark with HTML on would read `<your name>` as the start of an HTML block and take
    # the next lines along as raw text; with HTML off they are an ordinary list.
    html = render_markdown("1. <your name>\n   - **bold** item\n2. <div>\n*after*\n</div>")

    assert tags(html) == ["ol", "li", "ul", "li", "strong", "li", "em"]
    assert "&lt;your name&gt;" in html
    assert "&lt;div&gt;" in html
    assert "&lt;/div&gt;" in html


def test_render_lines_of_html_one_after_another_all_stay_text():
    html = render_markdown("<div>\n" * 3 + "**bold**\n\n" + "<p>\n" * 12 + "end")

    assert html.count("&lt;div&gt;") == 3
    assert "<strong>bold</strong>" in html
    assert html.count("&lt;p&gt;") == 12
    assert "end" in html
    assert_inert(html)


def test_render_link_with_a_refused_scheme_keeps_only_its_text():
    html = render_markdown("see [the docs](javascript:alert(1)) and [a page](data:text/html,x)")

    assert html == "<p>see the docs and a page</p>\n"


def test_render_table_without_body_rows():
    html = render_markdown("| a | b |\n|:--|--:|\n")

    assert tags(html) == ["table", "thead", "tr", "th", "th"]


@pytest.mark.parametrize(
    "markdown",
    [
        "> " * 100_000 + "x",
        "- " * 50_000 + "x",
        "[" * 100_000,
        "*a" * 50_000,
        "<b>" * 30_000,
        "|a|\n|-|\n" + "|x|\n" * 10_000,
    ],
    ids=["quotes", "lists", "brackets", "emphasis", "tags", "table"],
)
def test_render_survives_pathologically_nested_input(markdown):
    # A model can be made to write anything; a parser that recursed per nesting level would
    # overflow its stack here and take the server process down with every stream in it.
    html = render_markdown(markdown)

    assert html
    assert_inert(html)


def test_render_keeps_the_text_of_elements_nested_too_deep():
    html = render_markdown("> " * 10_000 + "deep")

    assert 0 < tags(html).count("blockquote") <= rendering._MAX_NESTING
    assert "deep" in html


# Untrusted input stays inert.

XSS_CORPUS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<iframe src=https://evil.example></iframe>",
    "<form action=https://evil.example><button>go</button></form>",
    '<a href="javascript:alert(1)">x</a>',
    '<p style="position:fixed">x</p>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;avascript&colon;alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:image/png;base64,AAA)",
    "<javascript:alert(1)>",
    "[x][r]\n\n[r]: javascript:alert(1)",
    '[x](https://ok.example "a\\" onmouseover=\\"alert(1)")',
    '```"><script>alert(1)</script>\nx\n```',
    "```python onload=alert(1)\nx\n```",
    "![a](https://evil.example/x.png)",
    "![a](//evil.example/x.png)",
    "![a](data:image/png;base64,AAA)",
    "![a](javascript:alert(1))",
    '![a" onerror="alert(1)](https://evil.example/x.png)',
    "[![a](https://evil.example/x.png)](https://ok.example)",
    "![a][r]\n\n[r]: https://evil.example/x.png",
]


@pytest.mark.parametrize("markdown", XSS_CORPUS)
def test_render_untrusted_markdown_is_inert(markdown):
    assert_inert(render_markdown(markdown))


def test_render_code_language_cannot_break_out_of_attribute():
    html = render_markdown('```"><script>alert(1)</script>\nx\n```')

    assert "<script" not in html
    assert ("code", {}) in elements(html)


def test_render_remote_image_becomes_link():
    html = render_markdown("![a *cat*](https://evil.example/x.png)")

    assert "img" not in tags(html)
    assert (
        "a",
        {
            "href": "https://evil.example/x.png",
            "class": "blocked-image",
            "target": "_blank",
            "rel": "noopener noreferrer nofollow",
        },
    ) in elements(html)
    assert "[image: a cat]" in html


def test_render_protocol_relative_image_becomes_link():
    html = render_markdown("![a](//evil.example/x.png)")

    assert "img" not in tags(html)
    assert "blocked-image" in html


def test_render_data_image_becomes_plain_text():
    html = render_markdown("![a](data:image/png;base64,AAA)")

    assert html == '<p><span class="blocked-image">[image: a]</span></p>\n'


def test_render_image_inside_link_does_not_nest_links():
    html = render_markdown("[![a](https://evil.example/x.png)](https://ok.example)")

    assert tags(html) == ["p", "a", "span"]


def test_render_same_origin_image_is_kept():
    html = render_markdown('![a](/media/x.png "t")')

    assert elements(html) == [("p", {}), ("img", {"src": "/media/x.png", "alt": "a", "title": "t"})]


@pytest.mark.parametrize(
    "src",
    ["https://evil.example/x.png", "//evil.example/x.png", "data:image/png;base64,AAA"],
)
def test_sanitizer_drops_remote_img_src_even_without_image_rule(monkeypatch, src):
    def plain_image(spec, alt, *, inside_link):
        return f'<img src="{spec["dest_url"]}" alt="{alt}">'

    monkeypatch.setattr(rendering, "_image_html", plain_image)

    html = render_markdown(f"![a]({src})")

    assert [attrs for tag, attrs in elements(html) if tag == "img"] == [{"alt": "a"}]


# Streaming.


def stream(chunks):
    """Feed every chunk; return all settled pieces in order and the last tail."""
    markdown = StreamingMarkdown()
    settled, tail = [], ""
    for chunk in chunks:
        pieces, tail = markdown.feed(chunk)
        settled.extend(pieces)
    return settled, tail


def random_chunks(text, seed):
    rng = random.Random(seed)
    chunks, position = [], 0
    while position < len(text):
        size = rng.randint(1, 8)
        chunks.append(text[position : position + size])
        position += size
    return chunks


# Block boundaries as the streaming rule sees them: a list or an indented line after a blank
# line continues the block before it.
MIXED_BLOCKS = [
    "1. first\n\n2. second\n\n",
    "# Title\n\n",
    "Some *text*\nover two lines.\n\n- one\n- two\n\n- three, loose\n\n  continued\n\n",
    "```python\ndef f():\n\n\n    return 1\n```\n\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
    "> quoted\n\n",
    "Code follows:\n\n    indented code\n\n    still code\n\n",
    "~~~~\n~~~\n\n```\nstill inside\n~~~~\n\n",
    "Last paragraph.",
]
MIXED = "".join(MIXED_BLOCKS)


def test_streaming_char_by_char_settles_each_block_once():
    settled, tail = stream(MIXED)

    assert settled == [render_markdown(block) for block in MIXED_BLOCKS[:-1]]
    assert tail == render_markdown(MIXED_BLOCKS[-1])


@pytest.mark.parametrize("seed", range(5))
def test_streaming_chunk_boundaries_do_not_change_blocks(seed):
    assert stream(random_chunks(MIXED, seed)) == stream(MIXED)


def test_streaming_one_feed_can_settle_several_blocks_in_order():
    settled, tail = StreamingMarkdown().feed("one\n\ntwo\n\nthree")

    assert settled == [render_markdown("one\n\n"), render_markdown("two\n\n")]
    assert tail == render_markdown("three")


def test_streaming_text_is_the_whole_answer():
    markdown = StreamingMarkdown()
    for chunk in random_chunks(MIXED, 0):
        markdown.feed(chunk)

    assert markdown.text == MIXED


def test_streaming_fence_with_blank_lines_does_not_settle_inside():
    text = "Intro\n\n```python\na = 1\n\n\nb = 2\n"
    markdown = StreamingMarkdown()
    settled = []
    for char in text:
        pieces, tail = markdown.feed(char)
        settled.extend(pieces)

    assert settled == [render_markdown("Intro\n\n")]
    assert tail == render_markdown("```python\na = 1\n\n\nb = 2\n")


def test_streaming_fence_closes_only_with_same_char_and_enough_length():
    text = "````\n```\n~~~~\n\nstill code\n````\n\nAfter"

    settled, tail = stream(text)

    assert settled == [render_markdown("````\n```\n~~~~\n\nstill code\n````\n\n")]
    assert tail == render_markdown("After")


def test_streaming_inline_triple_backticks_do_not_open_fence():
    settled, _ = stream("Use ```x``` inline.\n\nNext\n\nLast")

    assert settled == [render_markdown("Use ```x``` inline.\n\n"), render_markdown("Next\n\n")]


def test_streaming_fence_in_list_item_keeps_blank_lines_inside():
    text = "- step\n\n  ```sh\n  a\n\nb\n  ```\n\nAfter"

    settled, tail = stream(text)

    assert settled == [render_markdown("- step\n\n  ```sh\n  a\n\nb\n  ```\n\n")]
    assert tail == render_markdown("After")


def test_streaming_loose_list_stays_one_block():
    settled, tail = stream("- a\n\n- b\n\n  more b\n\nAfter")

    assert settled == [render_markdown("- a\n\n- b\n\n  more b\n\n")]
    assert tail == render_markdown("After")


def test_streaming_settles_once_next_line_start_is_known():
    markdown = StreamingMarkdown()

    assert markdown.feed("Para\n\n1")[0] == []
    assert markdown.feed("2")[0] == []
    assert markdown.feed(" apples")[0] == [render_markdown("Para\n\n")]


def test_streaming_list_marker_after_blank_keeps_block_open():
    markdown = StreamingMarkdown()

    assert markdown.feed("1. a\n\n2")[0] == []
    assert markdown.feed(". b\n\nDone")[0] == [render_markdown("1. a\n\n2. b\n\n")]


def test_streaming_leading_blank_lines_settle_nothing():
    settled, tail = stream("\n\n\nHello")

    assert settled == []
    assert tail == render_markdown("Hello")


def test_streaming_render_work_is_bounded_by_new_text_and_tail(monkeypatch):
    blocks = [f"Paragraph {i} with *some* text.\n\n" for i in range(2000)]
    text = "".join(blocks)
    rendered_lengths = []

    def counting_render(markdown, citations=None):
        rendered_lengths.append(len(markdown))
        return ""

    monkeypatch.setattr(streaming, "render_markdown", counting_render)
    markdown = StreamingMarkdown()
    for char in text:
        markdown.feed(char)

    longest_block = max(len(block) for block in blocks)
    # Each feed renders the tail (at most one block and a character), settled blocks once.
    assert max(rendered_lengths) <= longest_block + 1
    assert sum(rendered_lengths) <= len(text) + len(text) * (longest_block + 1)
    assert len(rendered_lengths) == len(text) + len(blocks) - 1


WHOLE_DOCUMENTS = [
    MIXED,
    "Intro with **bold**, `code` and a [link](https://example.com).\n\n"
    "1. one\n2. two\n\n   indented follow-up\n\n"
    "- a\n\n- b\n\nAfter the list.\n\n---\n\nSetext\n======\n\n"
    "> quote\ncontinued lazily\n\nEnd with a trailing newline\n",
    "See [the docs][d] and ![pic](/static/x.png).\n\n[d]: https://example.com/docs\n",
    "",
]


@pytest.mark.parametrize("document", WHOLE_DOCUMENTS)
@pytest.mark.parametrize("seed", range(3))
def test_streaming_whole_render_matches_rendering_the_whole_text(document, seed):
    markdown = StreamingMarkdown()
    settled, tail = [], ""
    for chunk in random_chunks(document, seed):
        pieces, tail = markdown.feed(chunk)
        settled.extend(pieces)

    assert markdown.render_whole(settled) == render_markdown(document)
    assert markdown.render_whole(settled, tail) == render_markdown(document)
