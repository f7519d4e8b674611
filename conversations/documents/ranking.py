"""Which passages of long documents a question is sent: each page cut into chunks that keep
their page, ranked against the question by `mistral-embed` when a Mistral key is set (and it
answers), else by BM25, which needs no model at all. Embeddings calls are recorded as usage.
"""

import asyncio
import logging
import math
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings

from conversations.errors import ChatError, ModelUnavailable
from conversations.models import Document
from conversations.modelservers import providers
from conversations.modelservers.mistral import MistralClient
from conversations.usage import api_call_record

logger = logging.getLogger(__name__)

CHUNK_WORDS = 180
# Chunks per embeddings call: well under the API's per-request token limit.
EMBEDDING_BATCH = 32
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


async def rank(
    chunks: list[Chunk], question: str, user_id: int, conversation_id: int
) -> tuple[list[Chunk], str]:
    """By mistral-embed when a Mistral key is set (and it answers), else by BM25."""
    if settings.MISTRAL_API_KEY and question.strip():
        try:
            return await _embedding_rank(chunks, question, user_id, conversation_id), (
                settings.CHAT_EMBEDDINGS_MODEL
            )
        except ChatError as err:
            logger.warning("Embeddings failed (%s); ranking by BM25", err.code)
    return await asyncio.to_thread(bm25_rank, chunks, question), "BM25"


async def _embedding_rank(
    chunks: list[Chunk], question: str, user_id: int, conversation_id: int
) -> list[Chunk]:
    client = providers.provider_for(settings.MISTRAL_MODEL).client
    if not isinstance(client, MistralClient):
        raise ModelUnavailable("Mistral is not configured.")
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
    except ChatError as err:
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
