"""A streaming answer's text and its HTML, kept as it grows: the settled blocks rendered
once, the open tail rendered only when it may look different from the raw text and no more
often than the render budget allows. The generation asks it for each delta's HTML; pages and
tabs that join late ask it for the state so far.
"""

import re

from django.conf import settings

from conversations.rendering import Citations, StreamingMarkdown

# Characters that can make rendered markdown differ from the same text appended plain
# (emphasis, code, links, headings, lists and `1.` items, tables, breaks, escapes,
# entities).
_MARKUP = re.compile(r"[\n*_`\[\]!#|~\\<>&=+.)-]")


class AnswerText:
    """The text of one answer so far, and its HTML as tabs were sent it."""

    __slots__ = (
        "_markdown",
        "_markup",
        "_rendered_at",
        "_stale",
        "_tail",
        "render_interval",
        "settled",
        "tail_renders_per_second",
    )

    def __init__(self) -> None:
        self._markdown = StreamingMarkdown()
        self.settled: list[str] = []  # html of the blocks that will not change
        self._tail = ""  # html of the open tail, as last rendered
        self._stale = False  # text arrived since the tail was rendered
        self._markup = False  # text that may change the tail's formatting arrived
        self._rendered_at = 0.0
        # Read once: a settings lookup per token showed in profiles.
        self.render_interval: float = settings.CHAT_RENDER_INTERVAL
        self.tail_renders_per_second: float = settings.CHAT_TAIL_RENDERS_PER_SECOND

    @property
    def text(self) -> str:
        return self._markdown.text

    def cite(self, citations: Citations) -> None:
        """Link citations of these documents from now on; call before the first text."""
        self._markdown.citations = citations

    def add(self, text: str, now: float, streaming: int) -> tuple[list[str], str | None]:
        """Fold one batch of text in: the html of blocks that settled with it, and the
        tail's html when it was rendered (None: tabs append the raw text, which for plain
        prose looks exactly like the rendered tail). The tail is rendered when text that can
        change its formatting arrived, at most every CHAT_RENDER_INTERVAL; a long open block
        less often, so the rendering work per second stays bounded whatever its length; and
        with `streaming` answers in this process, each less often still, so the process
        renders at most CHAT_TAIL_RENDERS_PER_SECOND tails a second. Text is never held
        back."""
        if not self._markup and _MARKUP.search(text):
            self._markup = True
        due = False
        if self._markup:
            interval = max(self.render_interval, streaming / self.tail_renders_per_second) * max(
                1.0, self._markdown.tail_length / 2000
            )
            due = now - self._rendered_at >= interval
        settled, tail = self._markdown.feed(text, render_tail=due)
        self.settled.extend(settled)
        if tail is None:
            self._stale = True
        else:
            self._tail, self._stale, self._rendered_at = tail, False, now
            self._markup = False
        return settled, tail

    def current_tail(self) -> str:
        """The open tail's html as it is now (rendered if text came since)."""
        if self._stale:
            self._tail, self._stale = self._markdown.render_tail(), False
        return self._tail

    def whole_html(self) -> str:
        """The finished answer's html, reusing what streaming rendered."""
        if not self.text:
            return ""
        return self._markdown.render_whole(self.settled, None if self._stale else self._tail)
