"""Reading an uploaded document into pages: only in the job worker (documents/jobs.py runs
it as a task), never on a request, never on the event loop.

A worker takes the document from `queued` to `ingesting`, reads it page by page, saving
`pages_done` on the row a few times a second for the composer's progress bar, and stores
every page at the end in one transaction together with status "ready": a document that fails
half-way keeps no pages, only its reason. While it reads, a thread renews the row's
`heartbeat_at`, so that a document whose worker died can be told from a slow one and put back
(jobs.documents_requeue).

Once stored, the document's passages are indexed for retrieval (and embedded, when it is
long and embeddings are on), so no question pays for that.

Pages without a text layer go to Mistral's OCR when MISTRAL_API_KEY is set, a few pages per
call, each call recorded with its cost; otherwise they are marked as page pictures, which
the request sends to a vision model.
"""

import asyncio
import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from conversations.documents import ranking, reading
from conversations.documents.reading import DocumentRejected, PageText
from conversations.errors import ChatError, ModelUnavailable
from conversations.models import Document, DocumentPage
from conversations.modelservers import providers
from conversations.modelservers.mistral import MistralClient
from conversations.modelservers.results import OcrResult
from conversations.modelservers.transport import aclose_clients
from conversations.usage import api_call_record

logger = logging.getLogger(__name__)

# How often at most the progress counter is written while a document is read.
PROGRESS_INTERVAL = 0.2
# A document this long is embedded when read (if embeddings are on): sent whole to no
# Mistral model (the smallest window is 32k tokens, half of it for documents), so its
# questions will need the vectors. A shorter one is embedded by its first question that does.
EMBED_AT_INGESTION_TOKENS = 16_384


def document_ingest(*, document_id: int) -> Document | None:
    """Read a queued document into pages and store them, or store why it could not be read.
    Synchronous and slow (OCR): only for the job worker, or a test.

    Safe to call twice, and from two workers at once: the step from `queued` to `ingesting`
    is one conditional UPDATE, so only one caller reads; the others return None, as they do
    for a document deleted meanwhile or already read. The attempt it took is checked again
    when the result is stored, so a reader given up for dead cannot store over its successor.
    """
    claimed = Document.objects.filter(pk=document_id, status=Document.Status.QUEUED).update(
        status=Document.Status.INGESTING,
        attempts=F("attempts") + 1,
        heartbeat_at=timezone.now(),
        pages_done=0,
    )
    document = Document.objects.filter(pk=document_id).first() if claimed else None
    if document is None:
        return None
    attempt = document.attempts
    with _Heartbeat(document_id, attempt):
        try:
            pages = _read(document)
        except DocumentRejected as err:
            document_fail(document_id=document_id, error=err.message, attempt=attempt)
            return None
        except Exception:
            # Any other failure is ours, not the file's: the user is told so, the log has why.
            logger.exception("Reading document %s broke", document_id)
            document_fail(
                document_id=document_id,
                error="Something went wrong on this server reading it.",
                attempt=attempt,
            )
            return None
        document.page_list = pages
        document_retrieval_prepare(document)
        return document_pages_store(document_id=document_id, pages=pages, attempt=attempt)


def document_retrieval_prepare(document: Document) -> None:
    """What retrieval needs of a document, made once and stored beside its file before it
    is ready: its passages and BM25 index and, for a long one when embeddings are on, its
    passages' vectors (documents/ranking.py). `document.page_list` holds its pages. A
    failure here costs only time: the first question that needs them makes them."""
    recorded: list[dict] = []
    try:
        index = ranking.document_index_store(document)
        if ranking.embeddings_available() and sum(index.tokens) > EMBED_AT_INGESTION_TOKENS:
            asyncio.run(_vectors(document, recorded))
    except ChatError as err:
        ranking.embeddings_failed(err)  # the next documents this worker reads wait too
    except OSError:
        logger.exception("Storing the retrieval index of document %s failed", document.pk)
    for record in recorded:
        api_call_record(**record)


async def _vectors(document: Document, recorded: list[dict]) -> None:
    """On a short-lived loop of the reading thread, whose HTTP clients are closed with it;
    the calls' usage is stored after it, from the thread."""
    try:
        await ranking.document_vectors(
            document, user_id=document.owner_id, conversation_id=None, recorded=recorded
        )
    finally:
        await aclose_clients()


def _read(document: Document) -> list[PageText]:
    progress = _Progress(document.pk)
    pages: list[PageText] = []
    for page in reading.read_pages(document, scanned=lambda n: _scanned(document, n)):
        pages.append(page)
        progress.set(len(pages))
    return pages


def _scanned(document: Document, numbers: list[int]) -> list[PageText]:
    """The text of pages without a text layer: OCR when a Mistral key is set; otherwise (or
    when OCR fails) the page's picture goes to a vision model with each question."""
    if settings.MISTRAL_API_KEY:
        model = settings.CHAT_OCR_MODEL
        started = time.monotonic()
        url = reading.pdf_data_url(reading.pdf_subset(document, numbers))
        try:
            result = asyncio.run(_ocr(model=model, url=url, name=document.name))
        except ChatError as err:
            logger.warning("OCR of document %s failed (%s)", document.pk, err.code)
            _record_ocr(document, model, started, 0, err.code)
        else:
            _record_ocr(document, result.model, started, result.pages_processed, "")
            texts = [reading.clean_text(text) for text in result.pages]
            return [
                PageText(n, text, DocumentPage.Source.OCR)
                if text.strip()
                else PageText(n, "", DocumentPage.Source.PAGE_IMAGE)
                for n, text in zip(numbers, texts + [""] * len(numbers), strict=False)
            ]
    return [PageText(n, "", DocumentPage.Source.PAGE_IMAGE) for n in numbers]


async def _ocr(*, model: str, url: str, name: str) -> OcrResult:
    """One OCR call, on a short-lived loop of the reading thread, whose HTTP clients are
    closed with it."""
    try:
        return await _mistral_client().ocr(model=model, document_url=url, name=name)
    finally:
        await aclose_clients()


def _record_ocr(document: Document, model: str, started: float, pages: int, error: str) -> None:
    api_call_record(
        kind="ocr",
        model=model,
        status="failed" if error else "complete",
        user_id=document.owner_id,
        pages=pages,
        latency_ms=round((time.monotonic() - started) * 1000),
        error_code=error,
        request={"model": model, "document": {"type": "document_url", "mime": reading.PDF}},
    )


def _mistral_client() -> MistralClient:
    """Mistral's client as the chat uses it (base URL, key, timeouts, retries)."""
    client = providers.provider_for(settings.MISTRAL_MODEL).client
    if not isinstance(client, MistralClient):
        raise ModelUnavailable("Mistral is not configured.")
    return client


class _Progress:
    """Writes `pages_done` at most every PROGRESS_INTERVAL seconds: the composer polls it."""

    def __init__(self, document_id: int) -> None:
        self.document_id = document_id
        self.written_at = 0.0

    def set(self, done: int) -> None:
        now = time.monotonic()
        if now - self.written_at >= PROGRESS_INTERVAL:
            Document.objects.filter(pk=self.document_id).update(pages_done=done)
            self.written_at = now


class _Heartbeat:
    """Renews the document's `heartbeat_at` from a thread of its own while it is read, every
    quarter of CHAT_INGEST_STALE_SECONDS: a long OCR call or a large page writes no progress
    for a while, and must not be taken for a dead worker. Only the process dying stops it."""

    def __init__(self, document_id: int, attempt: int) -> None:
        self.document_id = document_id
        self.attempt = attempt
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="ingest-heartbeat", daemon=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        interval = settings.CHAT_INGEST_STALE_SECONDS / 4
        try:
            while not self.stopped.wait(interval):
                try:
                    Document.objects.filter(
                        pk=self.document_id,
                        status=Document.Status.INGESTING,
                        attempts=self.attempt,
                    ).update(heartbeat_at=timezone.now())
                except DatabaseError as err:
                    # Missing one beat is harmless; the next one tries again.
                    logger.warning("Heartbeat of document %s not saved: %s", self.document_id, err)
        finally:
            connections.close_all()  # this thread's own connection


def document_pages_store(
    *, document_id: int, pages: list[PageText], attempt: int
) -> Document | None:
    """Store every page and mark the document ready, in one transaction; None when the
    document was deleted while it was read, or is no longer this attempt's to store (it was
    put back or given up while this reader seemed dead).

    Tokens are counted before the transaction, and it begins with its write, the conditional
    UPDATE: on SQLite a transaction that reads first and writes after another connection has
    written fails at once ("database is locked") instead of waiting its turn."""
    rows = [
        DocumentPage(
            document_id=document_id,
            number=page.number,
            text=page.text,
            source=page.source,
            tokens=reading.count_tokens(page.text),
        )
        for page in pages
    ]
    with transaction.atomic():
        if not _reading(document_id, attempt).update(
            status=Document.Status.READY,
            page_count=len(rows),
            pages_done=len(rows),
            tokens=sum(row.tokens for row in rows),
        ):
            return None
        DocumentPage.objects.bulk_create(rows)
    return Document.objects.get(pk=document_id)


def document_fail(*, document_id: int, error: str, attempt: int, only_if: Q | None = None) -> bool:
    """Keep only why the document could not be read: no pages, and its file removed; only
    while `attempt` is still the one reading it (see document_pages_store) and the row
    matches `only_if`. Whether it was failed. Begins with its write, as the above."""
    file = Document.objects.filter(pk=document_id).values_list("file", flat=True).first()
    still = _reading(document_id, attempt)
    if only_if is not None:
        still = still.filter(only_if)
    with transaction.atomic():
        if not still.update(status=Document.Status.FAILED, error=error[:500], file=""):
            return False
        DocumentPage.objects.filter(document_id=document_id).delete()
        if file:
            storage = Document._meta.get_field("file").storage

            def delete() -> None:
                for name in [file, *ranking.derived_file_names(file)]:
                    storage.delete(name)

            transaction.on_commit(delete)
    return True


def _reading(document_id: int, attempt: int) -> QuerySet[Document]:
    """The document while it is still being read by this attempt."""
    return Document.objects.filter(
        pk=document_id, status=Document.Status.INGESTING, attempts=attempt
    )
