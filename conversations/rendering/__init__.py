"""Model answers are untrusted input: their markdown becomes sanitized HTML here, on the
server (markdown.py), also while they stream (streaming.py), with their citations of the
documents a request carried made links (citations.py). No Django."""

from conversations.rendering.citations import Citations
from conversations.rendering.markdown import render_markdown
from conversations.rendering.streaming import StreamingMarkdown

__all__ = ["Citations", "StreamingMarkdown", "render_markdown"]
