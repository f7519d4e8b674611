"""A long document's pages cut into passages for retrieval: whole paragraphs where they fit,
else whole sentences, so no fact is cut in two; a passage never crosses a page (it keeps the
page it cites). Plain functions of the page text, no Django.
"""

import re
from collections.abc import Iterator

# About this many words a passage: small enough to rank the page that answers above its
# neighbours, large enough to carry a fact with its context.
PASSAGE_WORDS = 180
# A single sentence longer than this (a table flattened into text) is cut by words.
LONGEST_SENTENCE = 400

_PARAGRAPH = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? (with closing quotes or brackets) before a space and a capital,
# digit or opening quote; "e.g. the" and "p. 3" stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[A-Z0-9\"“‘(\[])")
_ABBREVIATION = re.compile(r"\b(?:[A-Z]|e\.g|i\.e|etc|vs|Mr|Mrs|Ms|Dr|St|No|Fig|p|pp|cf)\.$")


def page_passages(text: str, words: int = PASSAGE_WORDS) -> list[str]:
    """The page's text as passages of about `words` words, in order, each made of whole
    paragraphs or, for a paragraph too long, whole sentences."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for piece, joiner in _pieces(text, words):
        count = len(piece.split())
        if current and size + count > words:
            out.append("".join(current).strip())
            current, size = [], 0
        if current:
            current.append(joiner)
        current.append(piece)
        size += count
    if current:
        out.append("".join(current).strip())
    return [p for p in out if p]


def _pieces(text: str, words: int) -> Iterator[tuple[str, str]]:
    """Paragraphs, or the sentences of a paragraph longer than `words`, each with what joins
    it to the piece before it in the same passage."""
    for paragraph in _PARAGRAPH.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph.split()) <= words:
            yield paragraph, "\n\n"
            continue
        joiner = "\n\n"
        for sentence in sentences(paragraph):
            for part in _cut_long(sentence):
                yield part, joiner
                joiner = " "


def sentences(paragraph: str) -> list[str]:
    """The paragraph's sentences, whitespace inside each kept as it was."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        candidate = paragraph[start : match.start()].rstrip()
        if _ABBREVIATION.search(candidate):
            continue
        out.append(paragraph[start : match.end()].strip())
        start = match.end()
    rest = paragraph[start:].strip()
    if rest:
        out.append(rest)
    return out


def _cut_long(sentence: str) -> list[str]:
    words = sentence.split()
    if len(words) <= LONGEST_SENTENCE:
        return [sentence]
    return [
        " ".join(words[i : i + LONGEST_SENTENCE]) for i in range(0, len(words), LONGEST_SENTENCE)
    ]


def marker(name: str, page: int) -> str:
    """What heads a page's text in a request, and what the model is asked to cite."""
    return f'[Document "{name}", page {page}]'


_MARKER = re.compile(r'^\[Document "(.*)", page (\d+)\]$', re.MULTILINE)


def pages_marked(text: str) -> dict[str, list[int]]:
    """The pages whose markers a request's text holds, by document name, sorted: what the
    review panel lists of what the model received."""
    found: dict[str, set[int]] = {}
    for name, page in _MARKER.findall(text):
        found.setdefault(name, set()).add(int(page))
    return {name: sorted(pages) for name, pages in found.items()}


def page_ranges(numbers: list[int]) -> list[str]:
    """Sorted page numbers as ranges: [1, 2, 3, 7] → ["1-3", "7"]."""
    out: list[str] = []
    start = previous = None
    for n in [*numbers, None]:
        if n is not None and previous is not None and n == previous + 1:
            previous = n
            continue
        if start is not None:
            out.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = n
    return out
