"""Citations of the documents a request carried, turned into links while the answer's
markdown is rendered: "[p. 2]", "(page 2)", "[report.pdf, p. 2]". No Django: the caller
says how a page's URL is made.

The renderer hands this module the text between tags only (never code, a code block, an
image's alt text or a link's own text), before it is escaped, so nothing the model wrote can
become markup: each link is built here from a document id and a page number, and the cited
words are escaped like any other text.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

_CITATION = re.compile(
    r"(?P<open>[\[(])\s*"
    r"(?:[\"“]?(?P<name>[^\[\]()<>|]{1,120}?)[\"”]?\s*[,:;]\s*)?"
    r"(?:p\.|pp\.|page|pages|pg\.?)\s*(?P<page>\d{1,4})"
    r"(?P<more>(?:\s*(?:,|and|&|-|–)\s*(?:p\.\s*)?\d{1,4})*)"
    r"\s*[\])]",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Citations:
    """The documents an answer may cite, as (id, name, page count), oldest first, and how a
    page's URL is made from a document id and a page number."""

    documents: tuple[tuple[int, str, int], ...]
    page_url: Callable[[int, int], str]

    def link(self, text: str) -> str:
        """`text` escaped for HTML, its citations of known pages made links. A citation
        without a name means the newest document that has the page; one naming no document
        here, or a page no document has, stays text."""
        out: list[str] = []
        done = 0
        for match in _CITATION.finditer(text):
            link = self._link(match)
            if link is None:
                continue
            out += (escape(text[done : match.start()], quote=False), link)
            done = match.end()
        if not out:
            return escape(text, quote=False)
        out.append(escape(text[done:], quote=False))
        return "".join(out)

    def _link(self, match: re.Match) -> str | None:
        page = int(match.group("page"))
        name = (match.group("name") or "").strip().strip("\"'“”").strip().lower()
        candidates = [d for d in self.documents if 1 <= page <= d[2]]
        if name:
            named = [d for d in candidates if d[1].lower() == name]
            candidates = named or [d for d in candidates if name in d[1].lower()]
        if not candidates:
            return None
        document_id, document_name, _ = candidates[-1]
        url = escape(self.page_url(document_id, page))
        label = escape(f"{document_name}, page {page}")
        return (
            f'<a class="cite" href="{url}" data-document="{document_id}" data-page="{page}" '
            f'title="{label}">{escape(match.group(0), quote=False)}</a>'
        )
