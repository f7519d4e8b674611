"""What of a conversation's documents goes into a request, and how answers cite them.

Each request carries the conversation's documents in one of two modes:

- **full**: when their text fits CHAT_DOCUMENT_CONTEXT_SHARE of the model's context window
  (`max_context_length` from `GET /models`), all of it, page by page, each page headed by a
  marker such as `[Document "report.pdf", page 2]`;
- **retrieval**: otherwise the pages are cut into chunks (each keeps its page), ranked against
  the question (by `mistral-embed` when a Mistral key is set, else by BM25, which needs no
  model at all) and the best CHAT_RETRIEVAL_CHUNKS go, with the same markers.

Pages that have no text (scans when OCR was not available) go as pictures, and so does a
page the question points at along with a figure word ("the chart on page 4"), next to its
text. The model is asked to cite pages as `[report.pdf, p. 2]`; link_citations turns those
(and "(page 2)", "[p. 2]") in the sanitized answer into links built here from ids alone.
"""

import asyncio
import html
import logging
import math
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import reverse

from . import providers
from .documents import PDF, count_tokens, page_image_data_url
from .mistral import MistralClient, MistralError
from .models import Document, DocumentPage
from .selectors import document_ids_of, documents_with_pages
from .usage import FREE, api_call_record, call_cost, price_for

logger = logging.getLogger(__name__)

FULL, RETRIEVAL = "full", "retrieval"
CHUNK_WORDS = 180
# Chunks per embeddings call: well under the API's per-request token limit.
EMBEDDING_BATCH = 32
# Context window assumed for a model whose card cannot be read.
DEFAULT_CONTEXT = 32768
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
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "about",
        "page",
        "document",
        "says",
        "say",
        "tell",
        "me",
    ]
)


@dataclass(frozen=True, slots=True)
class Chunk:
    document_id: int
    name: str
    page: int
    text: str


@dataclass(slots=True)
class Plan:
    """What the documents add to a request: its mode, the text part, the page pictures."""

    mode: str
    tokens: int  # of the documents' part as sent (full mode: all of it)
    budget: int
    documents: list[Document]
    text: str = ""
    pictures: list[tuple[Document, int]] = field(default_factory=list)
    retriever: str = ""  # "mistral-embed" or "bm25", in retrieval mode

    def note(self) -> str:
        """A sentence under the answer: how the documents were sent."""
        count = len(self.documents)
        what = f"{count} document{'s' if count != 1 else ''}"
        if self.mode == FULL:
            return f"Sent the full text of {what}, ~{self.tokens:,} tokens."
        return (
            f"{what.capitalize()} too long to send whole: sent the "
            f"{settings.CHAT_RETRIEVAL_CHUNKS} most relevant passages "
            f"({self.retriever}), ~{self.tokens:,} tokens."
        )


def context_budget(max_context_length: int) -> int:
    return int(max_context_length * settings.CHAT_DOCUMENT_CONTEXT_SHARE)


def marker(name: str, page: int) -> str:
    return f'[Document "{name}", page {page}]'


def full_tokens(documents: list[Document]) -> int:
    """Tokens of the documents' text as full mode sends it: the instructions, then each
    page's marker and text (page tokens were counted when the document was read)."""
    total = count_tokens(_instructions(documents))
    for document in documents:
        for page in document.page_list:
            total += count_tokens(marker(document.name, page.number)) + 2 + page.tokens
    return total


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
    documents: list[Document], budget: int, question: str, ranked: list[Chunk], retriever: str
) -> Plan:
    """The best chunks in document and page order (easier to read than by score), plus the
    text of pages the question names."""
    named = referenced_pages(question)
    chosen = list(ranked[: settings.CHAT_RETRIEVAL_CHUNKS])
    for document in documents:
        for page in document.page_list:
            if page.number in named and page.text.strip():
                chosen.append(Chunk(document.pk, document.name, page.number, page.text))
    order = {d.pk: i for i, d in enumerate(documents)}
    seen: set[tuple[int, int, str]] = set()
    blocks = [
        _instructions(documents)
        + " The documents are too long to send whole: these are the passages most relevant "
        "to the question."
    ]
    for chunk in sorted(chosen, key=lambda c: (order[c.document_id], c.page)):
        key = (chunk.document_id, chunk.page, chunk.text)
        if key not in seen:
            seen.add(key)
            blocks.append(f"{marker(chunk.name, chunk.page)}\n{chunk.text}")
    text = "\n\n".join(blocks)
    return Plan(
        RETRIEVAL,
        count_tokens(text),
        budget,
        documents,
        text,
        _pictures(documents, question, []),
        retriever,
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
        parts.append({"type": "text", "text": f"{marker(document.name, number)} (picture)"})
        parts.append({"type": "image_url", "image_url": page_image_data_url(document, number)})
    return parts, max(0, len(plan.pictures) - limit)


# Ranking


def chunks_of(documents: list[Document]) -> list[Chunk]:
    """Each page cut into pieces of about CHUNK_WORDS words, each keeping its page."""
    out: list[Chunk] = []
    for document in documents:
        for page in document.page_list:
            words = page.text.split()
            for start in range(0, len(words), CHUNK_WORDS):
                out.append(
                    Chunk(
                        document.pk,
                        document.name,
                        page.number,
                        " ".join(words[start : start + CHUNK_WORDS]),
                    )
                )
    return out


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def bm25_rank(
    chunks: list[Chunk], question: str, *, k1: float = 1.5, b: float = 0.75
) -> list[Chunk]:
    """Chunks by Okapi BM25 score against the question, best first: term frequency with
    saturation, inverse document frequency, length normalisation. No model, no download."""
    query = set(_terms(question))
    if not chunks or not query:
        return list(chunks)
    docs = [Counter(_terms(chunk.text)) for chunk in chunks]
    lengths = [sum(d.values()) for d in docs]
    average = (sum(lengths) / len(lengths)) or 1.0
    n = len(docs)
    df = Counter(term for d in docs for term in query if term in d)
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
    scores = []
    for i, d in enumerate(docs):
        score = 0.0
        for term in query:
            tf = d.get(term, 0)
            if tf:
                score += idf[term] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[i] / average))
        scores.append(score)
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    return [chunks[i] for i in order]


def cosine_rank(chunks: list[Chunk], vectors: list[list[float]], query: list[float]) -> list[Chunk]:
    def cosine(v: list[float]) -> float:
        dot = sum(a * b for a, b in zip(v, query, strict=False))
        norm = math.sqrt(sum(a * a for a in v)) * math.sqrt(sum(b * b for b in query))
        return dot / norm if norm else 0.0

    scores = [cosine(v) for v in vectors]
    order = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))
    return [chunks[i] for i in order]


class EmbeddingCache:
    """Chunk vectors by document, kept in this process (a document's chunks never change),
    so only the first question about a long document embeds all of it."""

    def __init__(self, size: int = 32) -> None:
        self._items: OrderedDict[int, list[list[float]]] = OrderedDict()
        self._size = size

    def get(self, document_id: int) -> list[list[float]] | None:
        if document_id in self._items:
            self._items.move_to_end(document_id)
        return self._items.get(document_id)

    def put(self, document_id: int, vectors: list[list[float]]) -> None:
        self._items[document_id] = vectors
        self._items.move_to_end(document_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


embedding_cache = EmbeddingCache()


# Cost


def cost_estimate(model: str, prompt_tokens: int) -> Decimal | None:
    """What sending `prompt_tokens` to `model` costs in US dollars, at the admin's price
    table (conversations/usage.py); None when the model has no price there. The one place
    a preview asks for a price."""
    price = price_for(model)
    if price == FREE:
        return None
    return call_cost(price, prompt_tokens=prompt_tokens, completion_tokens=0)


# Citations

_CITATION = re.compile(
    r"(?P<open>[\[(])\s*"
    r"(?:(?:&quot;|“)?(?P<name>[^\[\]()<>|]{1,120}?)(?:&quot;|”)?\s*[,:;]\s*)?"
    r"(?:p\.|pp\.|page|pages|pg\.?)\s*(?P<page>\d{1,4})"
    r"(?P<more>(?:\s*(?:,|and|&amp;|-|–)\s*(?:p\.\s*)?\d{1,4})*)"
    r"\s*[\])]",
    re.IGNORECASE,
)
_NO_LINKS_IN = ("a", "code", "pre")


def link_citations(answer_html: str, documents: list[tuple[int, str, int]]) -> str:
    """Turn citations in a sanitized answer into links to the cited page's text: "[p. 2]",
    "(page 2)", "[report.pdf, p. 2]". `documents` are (id, name, page count), oldest first;
    a citation without a name means the newest document that has the page. Only text
    between tags is touched (never inside links or code), and each link is made here from
    an id and a number, so nothing the model wrote becomes markup."""
    if not documents:
        return answer_html
    pieces = re.split(r"(<[^>]*>)", answer_html)
    inside: Counter[str] = Counter()
    for i, piece in enumerate(pieces):
        if piece.startswith("<"):
            tag = re.match(r"</?\s*([a-zA-Z0-9]+)", piece)
            if tag and tag.group(1).lower() in _NO_LINKS_IN:
                inside[tag.group(1).lower()] += -1 if piece.startswith("</") else 1
            continue
        if piece and not any(count > 0 for count in inside.values()):
            pieces[i] = _CITATION.sub(lambda m: _citation_link(m, documents), piece)
    return "".join(pieces)


def _citation_link(match: re.Match, documents: list[tuple[int, str, int]]) -> str:
    page = int(match.group("page"))
    name = html.unescape(match.group("name") or "").strip().strip("\"'“”").strip()
    candidates = [d for d in documents if 1 <= page <= d[2]]
    if name:
        named = [d for d in candidates if d[1].lower() == name.lower()]
        if not named:
            named = [d for d in candidates if name.lower() in d[1].lower()]
        candidates = named
    if not candidates:
        return match.group(0)
    document_id, document_name, _ = candidates[-1]
    url = reverse("document_page", args=[document_id, page])
    label = html.escape(f"{document_name}, page {page}")
    return (
        f'<a class="cite" href="{url}" data-document="{document_id}" data-page="{page}" '
        f'title="{label}">{match.group(0)}</a>'
    )


# Planning a request (async: the model list and embeddings are network calls)


async def max_context_length(model: str) -> int:
    """The model's context window from its provider's `GET /models` card."""
    try:
        provider = providers.provider_for(model)
        for card in await provider.models():
            if model == card.id or model in (provider.prefix + a for a in card.aliases):
                return card.max_context_length
    except MistralError as err:
        logger.info("Reading the context window of %s failed (%s)", model, err.code)
    return DEFAULT_CONTEXT


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
    mode, tokens = await asyncio.to_thread(choose_mode, documents, budget)
    if mode == FULL:
        return await asyncio.to_thread(plan_full, documents, budget, tokens, question)
    chunks = chunks_of(documents)
    ranked, retriever = await _rank(chunks, question, user_id, conversation_id)
    return await asyncio.to_thread(plan_retrieval, documents, budget, question, ranked, retriever)


async def _rank(
    chunks: list[Chunk], question: str, user_id: int, conversation_id: int
) -> tuple[list[Chunk], str]:
    """By mistral-embed when a Mistral key is set (and it answers), else by BM25."""
    if settings.MISTRAL_API_KEY and question.strip():
        try:
            return await _embedding_rank(chunks, question, user_id, conversation_id), (
                settings.CHAT_EMBEDDINGS_MODEL
            )
        except MistralError as err:
            logger.warning("Embeddings failed (%s); ranking by BM25", err.code)
    return await asyncio.to_thread(bm25_rank, chunks, question), "BM25"


async def _embedding_rank(
    chunks: list[Chunk], question: str, user_id: int, conversation_id: int
) -> list[Chunk]:
    client = providers.provider_for(settings.MISTRAL_MODEL).client
    if not isinstance(client, MistralClient):
        raise MistralError("Mistral is not configured.")
    model = settings.CHAT_EMBEDDINGS_MODEL
    by_document: dict[int, list[Chunk]] = {}
    for chunk in chunks:
        by_document.setdefault(chunk.document_id, []).append(chunk)
    vectors: list[list[float]] = []
    for document_id, own in by_document.items():
        cached = embedding_cache.get(document_id)
        if cached is None or len(cached) != len(own):
            cached = []
            for start in range(0, len(own), EMBEDDING_BATCH):
                batch = [c.text for c in own[start : start + EMBEDDING_BATCH]]
                cached += await _embed(client, model, batch, user_id, conversation_id)
            embedding_cache.put(document_id, cached)
        vectors += cached
    query = (await _embed(client, model, [question], user_id, conversation_id))[0]
    ordered = [c for own in by_document.values() for c in own]
    return cosine_rank(ordered, vectors, query)


async def _embed(
    client: MistralClient, model: str, inputs: list[str], user_id: int, conversation_id: int
) -> list[list[float]]:
    """One embeddings call, recorded with its tokens and cost whether it worked or not."""
    started = time.monotonic()
    error = ""
    tokens = 0
    try:
        result = await client.embeddings(model=model, inputs=inputs)
        tokens = result.prompt_tokens
        return result.vectors
    except MistralError as err:
        error = err.code
        raise
    finally:
        await database_sync_to_async(api_call_record)(
            kind="embeddings",
            model=model,
            status="failed" if error else "complete",
            user_id=user_id,
            conversation_id=conversation_id,
            prompt_tokens=tokens,
            latency_ms=round((time.monotonic() - started) * 1000),
            error_code=error,
            request={"model": model, "inputs": len(inputs)},
        )
