"""Which passages of long documents a question is sent, best first.

A document's passages (documents/passages.py) and its BM25 index are built once, when the
job worker has read it, and stored beside its file (`<file>.passages.json`); a question
reads them from this process's cache and scores only the postings of its own words. When a
Mistral key is set and CHAT_RETRIEVAL_EMBEDDINGS is on, the passages' `mistral-embed`
vectors are stored beside the file too (`<file>.vectors`, made at ingestion, or by the first
question when that failed), calls made several at a time; the question's vector ranks them,
and that ranking and BM25's are fused by reciprocal rank. A failed embeddings call is
remembered for CHAT_EMBEDDINGS_RETRY_SECONDS, during which BM25 alone ranks, with no call.
Every embeddings call is recorded as usage.

Over 400 lines: ranking is one job with its two halves (BM25's index, stored and cached, and
the embeddings' vectors, stored, cached and fused), which share the passages and the caches.
"""

import array
import asyncio
import itertools
import logging
import math
import operator
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile

from conversations.documents.passages import marker, page_passages
from conversations.documents.reading import count_tokens
from conversations.errors import ChatError, ModelUnavailable
from conversations.models import Document
from conversations.modelservers import providers
from conversations.modelservers.mistral import MistralClient
from conversations.usage import api_call_record

logger = logging.getLogger(__name__)

# Bump when passages or terms are cut differently: stored indexes of another version are
# built again when first needed.
INDEX_VERSION = 2
# BM25's saturation and length normalisation, chosen on bench/retrieval.py (Lucene's
# defaults; the textbook 1.5 / 0.75 found fewer right pages there).
BM25_K1 = 0.9
BM25_B = 0.4
# Reciprocal rank fusion's constant (Cormack et al., 2009).
RRF_K = 60
# mistral-embed reads at most 8,192 tokens an input and 16,384 a call; our count is
# Tekken's, not the embedding model's, so each call keeps well below.
EMBEDDING_CALL_TOKENS = 12_000
EMBEDDING_CALL_INPUTS = 128

_WORD = re.compile(r"\w+", re.UNICODE)
# Lucene's English stopwords, the words every question has, and our own markers' words.
_STOPWORDS = frozenset(
    """a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with does did do has have had how what when where
    which who whom why whose can could should would may might must shall i me my we our you
    your he she his her its from about page pages document documents says say tell please
    any some""".split()  # noqa: SIM905 (a list of 80 words reads better as prose)
)


@dataclass(frozen=True, slots=True)
class Passage:
    document_id: int
    name: str
    page: int
    position: int  # in its document, from 0: the text order
    text: str
    tokens: int  # of its marker and text as a request carries them


@dataclass(slots=True)
class PassageIndex:
    """One document's passages and their BM25 postings: term → [passage, frequency, …]."""

    pages: list[int]
    texts: list[str]
    tokens: list[int]
    lengths: list[int]
    postings: dict[str, list[int]]
    spread: list[int] | None = None  # positions in spread order, made when first needed

    def passages(self, document: Document) -> list[Passage]:
        return [_passage(document, self, i) for i in range(len(self.texts))]


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def index_build(document: Document) -> PassageIndex:
    """The document's passages, in text order, and their postings; `document.page_list`
    as selectors.documents_with_pages gives it. Counts tokens: seconds on a long document,
    which is why ingestion does it once."""
    index = PassageIndex([], [], [], [], {})
    for page in document.page_list:
        for text in page_passages(page.text):
            number = len(index.texts)
            index.pages.append(page.number)
            index.texts.append(text)
            index.tokens.append(count_tokens(f"{marker(document.name, page.number)}\n{text}") + 2)
            counts = Counter(terms(text))
            index.lengths.append(sum(counts.values()))
            for term, count in counts.items():
                index.postings.setdefault(term, []).extend((number, count))
    return index


def _index_name(document: Document) -> str:
    return f"{document.file.name}.passages.json"


def _vectors_name(document: Document) -> str:
    return f"{document.file.name}.vectors"


def derived_file_names(file_name: str) -> list[str]:
    """What retrieval stores beside a document's file: gone with it."""
    return [f"{file_name}.passages.json", f"{file_name}.vectors"]


def document_index_store(document: Document) -> PassageIndex:
    """Build the document's index and store it beside its file: ingestion calls this before
    the document is ready; a question, for a document read before indexes were."""
    index = index_build(document)
    if document.file.name:
        storage = document.file.storage
        name = _index_name(document)
        data = {"version": INDEX_VERSION, **{k: getattr(index, k) for k in _FIELDS}}
        _replace(storage, name, orjson.dumps(data))
    _indexes.put(_cache_key(document), index)
    return index


_FIELDS = ("pages", "texts", "tokens", "lengths", "postings")


def _replace(storage, name: str, data: bytes) -> None:
    """Write `name` anew. Two processes writing it at once write the same bytes; the one
    the storage gave another name (it never overwrites) removes its copy."""
    storage.delete(name)
    saved = storage.save(name, ContentFile(data))
    if saved != name:
        storage.delete(saved)


def _cache_key(document: Document) -> str:
    return document.file.name or f"#{document.pk}"


class _Cache:
    """Least recently used, bounded: what this process keeps of stored indexes and vectors."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict = OrderedDict()
        self._size = size

    def get(self, key):
        if key in self._items:
            self._items.move_to_end(key)
        return self._items.get(key)

    def put(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


# A 400-page document's index takes about 8 MB in memory, its vectors about 6 MB.
_indexes = _Cache(16)
_vectors = _Cache(8)
# One embedding of a document at a time in this process: two questions arriving together
# about a document without vectors pay for them once. By key; only ever awaited on the
# process's one event loop (the job worker embeds on loops of its own, and passes none).
_embedding: dict[tuple[str, str], asyncio.Lock] = {}


def document_index(document: Document) -> PassageIndex:
    """The document's index: from this process's cache, else its stored file, else built
    now (and stored) for a document read before indexes were, or whose file lost it."""
    key = _cache_key(document)
    index = _indexes.get(key)
    if index is not None:
        return index
    if document.file.name:
        try:
            with document.file.storage.open(_index_name(document), "rb") as f:
                data = orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError):
            data = None
        if data is not None and data.get("version") == INDEX_VERSION:
            index = PassageIndex(*(data[k] for k in _FIELDS))
            _indexes.put(key, index)
            return index
    return document_index_store(document)


def passages_of(document: Document) -> list[Passage]:
    return document_index(document).passages(document)


def bm25_rank(documents: list[Document], question: str) -> list[Passage]:
    """Passages that share a word with the question, by Okapi BM25 score, best first:
    term frequency with saturation, inverse document frequency over all the documents'
    passages, length normalisation. Only the question's postings are read."""
    indexes = [document_index(d) for d in documents]
    query = set(terms(question))
    n = sum(len(i.texts) for i in indexes)
    if not n or not query:
        return []
    average = (sum(sum(i.lengths) for i in indexes) / n) or 1.0
    df = {t: sum(len(i.postings.get(t, ())) // 2 for i in indexes) for t in query}
    scores: dict[tuple[int, int], float] = {}
    k1, b = BM25_K1, BM25_B
    for d, index in enumerate(indexes):
        lengths = index.lengths
        for term in query:
            postings = index.postings.get(term)
            if not postings:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            for j in range(0, len(postings), 2):
                p, tf = postings[j], postings[j + 1]
                norm = k1 * (1 - b + b * lengths[p] / average)
                key = (d, p)
                scores[key] = scores.get(key, 0.0) + idf * tf * (k1 + 1) / (tf + norm)
    order = sorted(scores, key=lambda key: (-scores[key], key))
    heads = [(d.pk, d.name) for d in documents]
    return [
        Passage(*heads[d], indexes[d].pages[p], p, indexes[d].texts[p], indexes[d].tokens[p])
        for d, p in order
    ]


def _passage(document: Document, index: PassageIndex, i: int) -> Passage:
    return Passage(document.pk, document.name, index.pages[i], i, index.texts[i], index.tokens[i])


def spread_passages(documents: list[Document]) -> Iterator[Passage]:
    """Every passage, in an order that covers each document evenly however many are taken
    (positions with their bits reversed: 0, n/2, n/4, 3n/4, …), documents in turn."""
    orders = []
    for document in documents:
        index = document_index(document)
        if index.spread is None:
            n = len(index.texts)
            bits = max(1, (n - 1).bit_length())
            index.spread = sorted(range(n), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))
        orders.append((document, index))
    for step in itertools.zip_longest(*(index.spread for _, index in orders)):
        for (document, index), i in zip(orders, step, strict=True):
            if i is not None:
                yield _passage(document, index, i)


def fuse(*rankings: list[Passage]) -> list[Passage]:
    """Reciprocal rank fusion: each passage scores the sum of 1 / (RRF_K + its rank) over
    the rankings it is in."""
    scores: dict[tuple[int, int], float] = {}
    by_key: dict[tuple[int, int], Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, 1):
            key = (passage.document_id, passage.position)
            by_key[key] = passage
            scores[key] = scores.get(key, 0.0) + 1 / (RRF_K + rank)
    return [by_key[k] for k in sorted(scores, key=lambda k: (-scores[k], k))]


def embeddings_wanted() -> bool:
    return bool(settings.MISTRAL_API_KEY) and settings.CHAT_RETRIEVAL_EMBEDDINGS


# Embeddings failures remembered: model → until when (monotonic) nothing is asked.
_embeddings_down: dict[str, float] = {}


def process_state_reset() -> None:
    """Forget what this process keeps (indexes, vectors, failures): for tests."""
    _indexes.clear()
    _vectors.clear()
    _embeddings_down.clear()
    _embedding.clear()


async def rank(
    documents: list[Document], question: str, user_id: int, conversation_id: int | None
) -> tuple[list[Passage], str]:
    """The passages best first and what ranked them: BM25 fused with mistral-embed when a
    key is set, embeddings are on and not failing lately; else BM25 alone."""
    lexical = await asyncio.to_thread(bm25_rank, documents, question)
    model = settings.CHAT_EMBEDDINGS_MODEL
    if not (embeddings_available() and question.strip()):
        return lexical, "BM25"
    try:
        semantic = await _embedding_rank(documents, question, user_id, conversation_id)
    except ChatError as err:
        embeddings_failed(err)
        return lexical, "BM25"
    _embeddings_down.pop(model, None)
    return fuse(lexical, semantic), f"BM25 + {model}"


def embeddings_available() -> bool:
    """Embeddings are wanted (a key, the setting on) and have not failed lately."""
    model = settings.CHAT_EMBEDDINGS_MODEL
    return embeddings_wanted() and _embeddings_down.get(model, 0.0) <= time.monotonic()


def embeddings_failed(err: ChatError) -> None:
    """Remember the failure: no call for CHAT_EMBEDDINGS_RETRY_SECONDS."""
    model = settings.CHAT_EMBEDDINGS_MODEL
    _embeddings_down[model] = time.monotonic() + settings.CHAT_EMBEDDINGS_RETRY_SECONDS
    logger.warning("Embeddings failed (%s); ranking by BM25 alone for a while", err.code)


async def _embedding_rank(
    documents: list[Document], question: str, user_id: int, conversation_id: int | None
) -> list[Passage]:
    client = _mistral_client()
    model = settings.CHAT_EMBEDDINGS_MODEL
    # The question first: a refused model or key costs one call, not one per batch.
    query = _unit((await _embed(client, model, [question], user_id, conversation_id))[0])
    stored = [
        await document_vectors(d, client=client, user_id=user_id, conversation_id=conversation_id)
        for d in documents
    ]
    scored: list[tuple[float, Passage]] = []
    for document, vectors in zip(documents, stored, strict=True):
        passages = await asyncio.to_thread(passages_of, document)
        scores = await asyncio.to_thread(_dots, vectors, query)
        scored += zip(scores, passages, strict=True)
    scored.sort(key=lambda item: (-item[0], item[1].document_id, item[1].position))
    return [p for _, p in scored]


def _dots(vectors: list[array.array], query: array.array) -> list[float]:
    return [sum(map(operator.mul, v, query)) for v in vectors]


def _unit(vector: list[float]) -> array.array:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return array.array("f", (x / norm for x in vector))


def _mistral_client() -> MistralClient:
    client = providers.provider_for(settings.MISTRAL_MODEL).client
    if not isinstance(client, MistralClient):
        raise ModelUnavailable("Mistral is not configured.")
    return client


async def document_vectors(
    document: Document,
    *,
    client: MistralClient | None = None,
    user_id: int,
    conversation_id: int | None,
    recorded: list[dict] | None = None,
) -> list[array.array]:
    """The unit vectors of the document's passages under CHAT_EMBEDDINGS_MODEL: from this
    process, else from beside its file, else asked now, CHAT_EMBEDDINGS_CONCURRENCY calls
    at a time, and stored. Raises ChatError when a call fails (nothing is stored then).
    With `recorded`, the calls' usage rows are appended there for the caller to store
    (a loop of the job worker's own must not wait on the database thread)."""
    model = settings.CHAT_EMBEDDINGS_MODEL
    key = (_cache_key(document), model)
    vectors = _vectors.get(key)
    if vectors is not None:
        return vectors
    if recorded is not None:  # the job worker, on a loop of its own
        return await _vectors_made(document, key, client, user_id, conversation_id, recorded)
    async with _embedding.setdefault(key, asyncio.Lock()):  # a few bytes per document
        return _vectors.get(key) or await _vectors_made(
            document, key, client, user_id, conversation_id, None
        )


async def _vectors_made(
    document: Document,
    key: tuple[str, str],
    client: MistralClient | None,
    user_id: int,
    conversation_id: int | None,
    recorded: list[dict] | None,
) -> list[array.array]:
    model = key[1]
    vectors = await asyncio.to_thread(_vectors_read, document, model)
    if vectors is None:
        client = client or _mistral_client()
        texts = [p.text for p in await asyncio.to_thread(passages_of, document)]
        tokens = document_index(document).tokens
        limit = asyncio.Semaphore(max(1, settings.CHAT_EMBEDDINGS_CONCURRENCY))

        async def call(batch: list[str]) -> list[list[float]]:
            async with limit:
                return await _embed(client, model, batch, user_id, conversation_id, recorded)

        # A task group: the first failure cancels the calls still waiting.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(call(batch)) for batch in _batches(texts, tokens)]
        except ExceptionGroup as failed:
            first = next((e for e in failed.exceptions if isinstance(e, ChatError)), None)
            if first is None:
                raise
            raise first from None
        vectors = [_unit(v) for task in tasks for v in task.result()]
        await asyncio.to_thread(_vectors_write, document, model, vectors)
    _vectors.put(key, vectors)
    return vectors


def _batches(texts: list[str], tokens: list[int]) -> list[list[str]]:
    out: list[list[str]] = []
    size = 0
    for text, count in zip(texts, tokens, strict=True):
        if out and size + count <= EMBEDDING_CALL_TOKENS and len(out[-1]) < EMBEDDING_CALL_INPUTS:
            out[-1].append(text)
            size += count
        else:
            out.append([text])
            size = count
    return out


def _vectors_read(document: Document, model: str) -> list[array.array] | None:
    if not document.file.name:
        return None
    try:
        with document.file.storage.open(_vectors_name(document), "rb") as f:
            head, _, body = f.read().partition(b"\n")
        meta = orjson.loads(head)
    except (OSError, orjson.JSONDecodeError):
        return None
    if meta.get("model") != model or meta.get("version") != INDEX_VERSION:
        return None
    flat = array.array("f")
    flat.frombytes(body)
    dims, count = meta["dims"], meta["count"]
    if len(flat) != dims * count:
        return None
    return [flat[i * dims : (i + 1) * dims] for i in range(count)]


def _vectors_write(document: Document, model: str, vectors: list[array.array]) -> None:
    if not document.file.name or not vectors:
        return
    dims = len(vectors[0])
    meta = {"version": INDEX_VERSION, "model": model, "dims": dims, "count": len(vectors)}
    flat = array.array("f")
    for vector in vectors:
        flat.extend(vector)
    _replace(
        document.file.storage, _vectors_name(document), orjson.dumps(meta) + b"\n" + flat.tobytes()
    )


async def _embed(
    client: MistralClient,
    model: str,
    inputs: list[str],
    user_id: int,
    conversation_id: int | None,
    recorded: list[dict] | None = None,
) -> list[list[float]]:
    """One embeddings call, recorded with its tokens and cost whether it worked or not
    (or its record appended to `recorded`)."""
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
        record = {
            "kind": "embeddings",
            "model": model,
            "status": "failed" if error else "complete",
            "user_id": user_id,
            "conversation_id": conversation_id,
            "prompt_tokens": tokens,
            "latency_ms": round((time.monotonic() - started) * 1000),
            "error_code": error,
            "request": {"model": model, "inputs": len(inputs)},
        }
        if recorded is None:
            await database_sync_to_async(api_call_record)(**record)
        else:
            recorded.append(record)
