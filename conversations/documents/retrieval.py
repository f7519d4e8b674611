"""What of a conversation's documents goes into a request.

Each request carries the conversation's documents in one of two modes:

- **full**: when their text fits CHAT_DOCUMENT_CONTEXT_SHARE of the model's context window
  (`max_context_length` from `GET /models`), all of it, page by page, each page headed by a
  marker such as `[Document "report.pdf", page 2]`;
- **retrieval**: otherwise the passages (whole paragraphs or sentences of a page, cut once
  at ingestion) ranked against the question (documents/ranking.py: BM25, fused with
  `mistral-embed` when a Mistral key is set) fill the same budget, best first, and go in
  the documents' text order, each run of neighbouring passages under its page's marker.

Pages that have no text (scans when OCR was not available) go as pictures, and so does a
page the question points at along with a figure word ("the chart on page 4"), next to its
text. The model is asked to cite pages as `[report.pdf, p. 2]`; the answer's renderer links those
(rendering/citations.py). Passages are cut and ranked in documents/ranking.py.
"""

import asyncio
import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from conversations.documents.passages import marker, page_ranges
from conversations.documents.ranking import Passage, passages_of, rank, spread_passages
from conversations.documents.reading import (
    PDF,
    DocumentRejected,
    count_tokens,
    page_image_data_url,
)
from conversations.models import Document, DocumentPage
from conversations.modelservers import providers
from conversations.selectors import document_ids_of, documents_with_pages

logger = logging.getLogger(__name__)

FULL, RETRIEVAL = "full", "retrieval"
# No passage with its marker takes fewer tokens: a budget with less left is full.
_SMALLEST_PASSAGE = 12
INSTRUCTIONS = (
    "The user attached the documents below. Answer from them when they are relevant, and "
    "cite the page of every fact you take from them in square brackets with the document's "
    "name, for example [{name}, p. 3]."
)
_PAGE_REF = re.compile(r"\b(?:page|p\.|pg\.?)\s*(\d{1,4})\b", re.IGNORECASE)
_PICTURE_WORDS = re.compile(
    r"\b(chart|figure|fig\.|graph|diagram|table|image|picture|plot|illustration|photo|scan|"
    r"drawing|map|logo|layout|look)s?\b",
    re.IGNORECASE,
)


@dataclass(slots=True)
class Plan:
    """What the documents add to a request: its mode, the text part, the page pictures."""

    mode: str
    tokens: int  # of the documents' part as sent (full mode: all of it)
    budget: int
    documents: list[Document]
    text: str = ""
    pictures: list[tuple[Document, int]] = field(default_factory=list)
    retriever: str = ""  # "BM25" or "BM25 + mistral-embed", in retrieval mode
    passages: list[Passage] = field(default_factory=list)  # sent, in text order

    def note(self) -> str:
        """A sentence under the answer: how the documents were sent, and in retrieval mode
        from which pages."""
        count = len(self.documents)
        what = f"{count} document{'s' if count != 1 else ''}"
        if self.mode == FULL:
            return f"Sent the full text of {what}, ~{self.tokens:,} tokens."
        sent = len(self.passages)
        pages = f", from {pages_sent(self.passages)}" if self.passages else ""
        return (
            f"{what.capitalize()} too long to send whole: sent the {sent} most relevant "
            f"passage{'s' if sent != 1 else ''} ({self.retriever}), ~{self.tokens:,} "
            f"tokens{pages}."
        )


def pages_sent(passages: list[Passage], most: int = 12) -> str:
    """The pages passages came from, per document, as ranges: "p. 3-5, 37 of manual.pdf";
    past `most` ranges a document's list ends with how many more pages."""
    by_name: dict[str, list[int]] = {}
    for passage in passages:
        pages = by_name.setdefault(passage.name, [])
        if passage.page not in pages:
            pages.append(passage.page)
    out = []
    for name, pages in by_name.items():
        ranges = page_ranges(sorted(pages))
        shown = ", ".join(ranges[:most])
        if len(ranges) > most:
            left = sum(_range_size(r) for r in ranges[most:])
            shown += f" and {left} more page{'s' if left != 1 else ''}"
        out.append(f"p. {shown} of {name}")
    return "; ".join(out)


def _range_size(text: str) -> int:
    first, _, last = text.partition("-")
    return int(last or first) - int(first) + 1


def context_budget(max_context_length: int) -> int:
    return int(max_context_length * settings.CHAT_DOCUMENT_CONTEXT_SHARE)


def full_tokens(documents: list[Document]) -> int:
    """Tokens of the documents' text as full mode sends it: the instructions, then each
    page's marker and text (page tokens were counted when the document was read)."""
    return count_tokens(_instructions(documents)) + sum(_pages_tokens(d) for d in documents)


# A ready document's pages never change: the count of their markers is kept (by id, name
# and the pages' own tokens), so a question does not count 400 markers again.
_counted: dict[tuple[int, str, int, int], int] = {}


def _pages_tokens(document: Document) -> int:
    pages = document.page_list
    key = (document.pk, document.name, len(pages), sum(p.tokens for p in pages))
    if key not in _counted:
        if len(_counted) > 1024:
            _counted.clear()
        _counted[key] = sum(
            count_tokens(marker(document.name, page.number)) + 2 + page.tokens for page in pages
        )
    return _counted[key]


def choose_mode(documents: list[Document], budget: int) -> tuple[str, int]:
    """FULL when the documents' whole text fits the budget, else RETRIEVAL; with the full
    text's tokens."""
    tokens = full_tokens(documents)
    return (FULL if tokens <= budget else RETRIEVAL), tokens


def plan_full(documents: list[Document], budget: int, tokens: int, question: str) -> Plan:
    blocks = [_instructions(documents)]
    for document in documents:
        for page in document.page_list:
            body = page.text if page.text.strip() else "(no text: this page is sent as a picture)"
            blocks.append(f"{marker(document.name, page.number)}\n{body}")
    pictures = [
        (d, p.number)
        for d in documents
        for p in d.page_list
        if p.source == DocumentPage.Source.PAGE_IMAGE
    ]
    return Plan(
        FULL,
        tokens,
        budget,
        documents,
        "\n\n".join(blocks),
        _pictures(documents, question, pictures),
    )


def plan_retrieval(
    documents: list[Document], budget: int, question: str, ranked: list[Passage], retriever: str
) -> Plan:
    """As many passages as the budget holds, best first (the passages of pages the question
    names before all, the ones no ranking chose last), at most CHAT_RETRIEVAL_CHUNKS when
    that is set; sent in each
    document's text order, neighbouring passages of a page under one marker, so a page reads
    as it was written."""
    head = (
        _instructions(documents)
        + " The documents are too long to send whole: these are the passages most relevant "
        "to the question, in the documents' order."
    )
    used = count_tokens(head)
    named = referenced_pages(question)
    first = [p for d in documents if named for p in passages_of(d) if p.page in named]
    cap = settings.CHAT_RETRIEVAL_CHUNKS
    chosen: dict[tuple[int, int], Passage] = {}
    # After the ranked passages, the rest spread over the documents: a question whose words
    # the text lacks ("Summarise it") still gets the budget's worth, from end to end.
    for passage in itertools.chain(first, ranked, spread_passages(documents)):
        if budget - used < _SMALLEST_PASSAGE or (cap and len(chosen) >= cap + len(first)):
            break
        key = (passage.document_id, passage.position)
        if key in chosen or used + passage.tokens > budget:
            continue
        chosen[key] = passage
        used += passage.tokens
    order = {d.pk: i for i, d in enumerate(documents)}
    sent = sorted(chosen.values(), key=lambda p: (order[p.document_id], p.position))
    blocks = [head]
    previous: Passage | None = None
    for passage in sent:
        if (
            previous is not None
            and previous.document_id == passage.document_id
            and previous.page == passage.page
            and previous.position + 1 == passage.position
        ):
            blocks[-1] += "\n\n" + passage.text
        else:
            blocks.append(f"{marker(passage.name, passage.page)}\n{passage.text}")
        previous = passage
    return Plan(
        RETRIEVAL,
        used,
        budget,
        documents,
        "\n\n".join(blocks),
        _pictures(documents, question, []),
        retriever,
        sent,
    )


def _instructions(documents: list[Document]) -> str:
    return INSTRUCTIONS.format(name=documents[-1].name if documents else "report.pdf")


def _pictures(
    documents: list[Document], question: str, always: list[tuple[Document, int]]
) -> list[tuple[Document, int]]:
    """Pages sent as pictures: pages without text, and PDF pages the question names along
    with a figure word. The newest documents' first when there are too many."""
    wanted = list(always)
    if _PICTURE_WORDS.search(question):
        named = referenced_pages(question)
        for document in reversed(documents):  # "page 4" most likely means the newest
            if document.mime != PDF:
                continue
            for number in sorted(named):
                if number <= document.page_count and (document, number) not in wanted:
                    wanted.insert(0, (document, number))
            if named & set(range(1, document.page_count + 1)):
                break
    return wanted


def referenced_pages(question: str) -> set[int]:
    return {int(n) for n in _PAGE_REF.findall(question)}


def document_parts(plan: Plan, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The content parts the documents add to the question: the text with page markers,
    then up to `limit` page pictures as `data:image/png;base64,` URLs (rendered now, so
    call it off the event loop), each after its marker. Returns them and the pictures left
    out."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": plan.text}]
    for document, number in plan.pictures[:limit]:
        try:
            url = page_image_data_url(document, number)
        except DocumentRejected as err:
            # A page past the sandbox's limits (or damaged): the model is told, the
            # question still goes.
            parts.append(
                {"type": "text", "text": f"{marker(document.name, number)} ({err.message})"}
            )
            continue
        parts.append({"type": "text", "text": f"{marker(document.name, number)} (picture)"})
        parts.append({"type": "image_url", "image_url": url})
    return parts, max(0, len(plan.pictures) - limit)


# Planning a request (async: the model list and embeddings are network calls)


async def max_context_length(model: str) -> int:
    """The model's context window (modelservers/providers.context_window)."""
    window, _ = await providers.context_window(model)
    return window


async def plan_for_request(
    *, model: str, history: list, user_id: int, conversation_id: int
) -> Plan | None:
    """How this conversation's documents go into the request for its newest question, or
    None when it has none. Reads rows and counts tokens in threads."""
    ids = document_ids_of(history)
    if not ids:
        return None
    documents = await database_sync_to_async(documents_with_pages)(document_ids=ids)
    if not documents:
        return None
    question = next((m.text for m in reversed(history) if m.role == "user"), "")
    budget = context_budget(await max_context_length(model))
    return await documents_plan(
        documents=documents,
        question=question,
        budget=budget,
        user_id=user_id,
        conversation_id=conversation_id,
    )


async def documents_plan(
    *,
    documents: list[Document],
    question: str,
    budget: int,
    user_id: int,
    conversation_id: int | None,
) -> Plan:
    """The documents' part of a request for `question` within `budget` tokens (documents
    with their `page_list`)."""
    mode, tokens = await asyncio.to_thread(choose_mode, documents, budget)
    if mode == FULL:
        return await asyncio.to_thread(plan_full, documents, budget, tokens, question)
    ranked, retriever = await rank(documents, question, user_id, conversation_id)
    return await asyncio.to_thread(plan_retrieval, documents, budget, question, ranked, retriever)
