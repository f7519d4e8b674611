"""Reading an uploaded document into pages, in worker threads: never on a request, never on
the event loop.

A document is queued once its upload is committed (the view calls document_ingest_enqueue
from transaction.on_commit). A worker reads it page by page, saving `pages_done` on the
document row a few times a second for the composer's progress bar, and stores every page at
the end in one transaction together with status "ready": a document that fails half-way
keeps no pages, only its reason.

Pages without a text layer go to Mistral's OCR when MISTRAL_API_KEY is set, a few pages per
call, each call recorded with its cost; otherwise they are marked as page pictures, which
the request sends to a vision model.
"""

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connections, transaction

from conversations.documents import reading
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

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def document_ingest_enqueue(document_id: int) -> None:
    """Read the document in a worker thread; returns at once. Call after the row is
    committed (the worker reads it from another connection)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.CHAT_INGEST_THREADS, thread_name_prefix="ingest"
            )
    _executor.submit(_work, document_id)


def _work(document_id: int) -> None:
    close_old_connections()
    try:
        document_ingest(document_id=document_id)
    except Exception:
        logger.exception("Reading document %s broke", document_id)
        document_fail(
            document_id=document_id, error="Something went wrong on this server reading it."
        )
    finally:
        connections.close_all()  # an idle worker holds no connection


def document_ingest(*, document_id: int) -> Document | None:
    """Read a queued document into pages and store them, or store why it could not be read.
    Synchronous and slow (OCR): only for a worker thread, or a test."""
    document = Document.objects.filter(pk=document_id, status=Document.Status.QUEUED).first()
    if document is None:
        return None  # deleted meanwhile, or already read
    Document.objects.filter(pk=document_id).update(status=Document.Status.INGESTING)
    progress = _Progress(document_id)
    pages: list[PageText] = []
    try:
        for page in reading.read_pages(document, scanned=lambda n: _scanned(document, n)):
            pages.append(page)
            progress.set(len(pages))
    except DocumentRejected as err:
        document_fail(document_id=document_id, error=err.message)
        return None
    return document_pages_store(document_id=document_id, pages=pages)


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
    """One OCR call, on the worker thread's own short-lived loop, whose HTTP clients are
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


@transaction.atomic
def document_pages_store(*, document_id: int, pages: list[PageText]) -> Document | None:
    """Store every page and mark the document ready, in one transaction; None when the
    document was deleted while it was read."""
    document = Document.objects.select_for_update().filter(pk=document_id).first()
    if document is None:
        return None
    rows = [
        DocumentPage(
            document=document,
            number=page.number,
            text=page.text,
            source=page.source,
            tokens=reading.count_tokens(page.text),
        )
        for page in pages
    ]
    DocumentPage.objects.bulk_create(rows)
    document.status = Document.Status.READY
    document.page_count = document.pages_done = len(rows)
    document.tokens = sum(row.tokens for row in rows)
    document.save(update_fields=["status", "page_count", "pages_done", "tokens"])
    return document


@transaction.atomic
def document_fail(*, document_id: int, error: str) -> None:
    """Keep only why the document could not be read: no pages, and its file removed."""
    document = Document.objects.select_for_update().filter(pk=document_id).first()
    if document is None:
        return
    DocumentPage.objects.filter(document=document).delete()
    if document.file.name:
        name, storage = document.file.name, document.file.storage
        transaction.on_commit(lambda: storage.delete(name))
    Document.objects.filter(pk=document_id).update(
        status=Document.Status.FAILED, error=error[:500], file=""
    )
