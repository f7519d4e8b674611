"""Documents a user attaches for questions (PDF, DOCX, plain text, Markdown, CSV): checked by
their content when uploaded, then read page by page by the job worker.

Every byte of a document is parsed in the sandbox (conversations/parsing.py): the check at
upload (type from the first bytes, pages, encryption, zip bombs) and the reading later. This
module is the Django side: it reads the settings, the stored file and the rows, and hands
the sandbox the bytes and the limits. A PDF's text is read a range of pages per call, so the
composer's progress bar moves, and pages without usable text go to OCR or are sent as
pictures; the seconds of CHAT_PARSE_SECONDS are for the whole file, across its calls.
"""

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import mistral_common
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from conversations import parsing
from conversations.models import Document, DocumentPage
from conversations.parsers.documents import DOCX, PDF, Limits
from conversations.parsers.errors import DocumentRejected
from conversations.parsers.text import ACCEPTED, clean_text

__all__ = ["ACCEPTED", "DOCX", "PDF", "DocumentRejected", "clean_text"]

# Pages are rendered at most this large (the vision models' limit, images.py).
PAGE_IMAGE_SIDE = 1540
# A PDF's text layer is read this many pages per call to the sandbox.
PDF_PAGES_PER_CALL = 25


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """An accepted upload: its bytes and what was found in them."""

    name: str
    data: bytes
    mime: str
    page_count: int


@dataclass(frozen=True, slots=True)
class PageText:
    number: int  # from 1
    text: str
    source: str  # a DocumentPage.Source


def limits() -> Limits:
    return Limits(
        pages=settings.CHAT_DOCUMENT_MAX_PAGES,
        characters=settings.CHAT_DOCUMENT_MAX_CHARACTERS,
        unpacked=settings.CHAT_DOCUMENT_MAX_UNPACKED_BYTES,
    )


def check_document_upload(upload: UploadedFile) -> PreparedDocument:
    """Validate an uploaded document by its content, or raise DocumentRejected. Nothing is
    stored here, so a refused file leaves nothing behind."""
    name = display_name(upload.name)
    limit = settings.CHAT_DOCUMENT_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise DocumentRejected("too_large", f"{name}: {_too_large(upload.size)}")
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise DocumentRejected("too_large", f"{name}: {_too_large(len(data))}")
    if not data:
        raise DocumentRejected("empty", f"{name}: the file is empty.")
    return prepare_document(name=name, data=data)


def prepare_document(*, name: str, data: bytes) -> PreparedDocument:
    """Find what `data` is from its first bytes (never its name) and check, in the sandbox,
    that it opens and is within the limits."""
    mime, pages = _parse("document_check", name, data, limits(), name=name)
    return PreparedDocument(name=name, data=data, mime=mime, page_count=pages)


def read_pages(
    document: Document, *, scanned: Callable[[list[int]], list[PageText]]
) -> Iterator[PageText]:
    """The document's text, page by page, in order. A PDF page without a usable text layer
    is collected and handed to `scanned` (OCR, or the page's picture) in batches as the
    reading goes on. Raises DocumentRejected when the file cannot be read or passes a
    limit."""
    data = _file_bytes(document)
    name = document.name
    if document.mime != PDF:
        for number, text in enumerate(
            _parse("document_pages", name, data, document.mime, limits(), name=name), 1
        ):
            yield PageText(number, text, DocumentPage.Source.TEXT_LAYER)
        return
    budget = _Budget()
    characters = settings.CHAT_DOCUMENT_MAX_CHARACTERS
    waiting: list[int] = []
    count = document.page_count
    for first in range(1, count + 1, PDF_PAGES_PER_CALL):
        last = min(first + PDF_PAGES_PER_CALL - 1, count)
        with budget:
            texts = _parse(
                "pdf_texts", name, data, first, last, characters, name=name, seconds=budget.left
            )
        for number, text in enumerate(texts, first):
            if text is None:
                waiting.append(number)
            else:
                characters -= len(text)
                yield PageText(number, text, DocumentPage.Source.TEXT_LAYER)
            if len(waiting) >= settings.CHAT_OCR_BATCH_PAGES:
                yield from scanned(waiting)
                waiting = []
    if waiting:
        yield from scanned(waiting)


class _Budget:
    """The seconds a file has left in the sandbox, over all its calls: OCR and saving
    between them do not count."""

    def __init__(self) -> None:
        self.left = float(settings.CHAT_PARSE_SECONDS)

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.left = max(0.001, self.left - (time.monotonic() - self.started))


def pdf_subset(document: Document, numbers: list[int]) -> bytes:
    """A PDF holding only these pages of the document, in order: what OCR is sent, so a
    100-page PDF with two scanned pages costs two pages."""
    name = document.name
    return _parse("pdf_subset", name, _file_bytes(document), numbers, name=name)


def pdf_data_url(data: bytes) -> str:
    """The form OCR takes a document in; built only while its request is."""
    return "data:application/pdf;base64," + base64.b64encode(data).decode("ascii")


def page_png(document: Document, number: int) -> bytes:
    """A PDF page rendered as PNG, its longer side PAGE_IMAGE_SIDE pixels: for a vision
    model (a scanned page, a chart) and for the reader's page view. Rendered when needed,
    never stored; reads the file and waits for the sandbox, so call it off the event loop.
    """
    name = document.name
    return _parse("pdf_page_png", name, _file_bytes(document), number, PAGE_IMAGE_SIDE, name=name)


def page_image_data_url(document: Document, number: int) -> str:
    return "data:image/png;base64," + base64.b64encode(page_png(document, number)).decode("ascii")


def _parse(task: str, *args: object, name: str, seconds: float | None = None):
    return parsing.parse(task, *args, name=name, rejected=DocumentRejected, seconds=seconds)


def _file_bytes(document: Document) -> bytes:
    with document.file.open("rb") as f:
        return f.read()


# Tokens


@cache
def _tokenizer() -> MistralTokenizer:
    """Mistral's own tokenizer (Tekken), from the file inside the mistral-common package:
    nothing is downloaded. Loading takes about a second, once per process."""
    path = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    return MistralTokenizer.from_file(str(path))


def count_tokens(text: str) -> int:
    """Tokens of `text` for Mistral's current models (Tekken)."""
    if not text:
        return 0
    return len(_tokenizer().instruct_tokenizer.tokenizer.encode(text, bos=False, eos=False))


# Helpers


def display_name(name: str | None) -> str:
    name = (name or "document").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return (name or "document")[:120]


def _too_large(size: int) -> str:
    limit = settings.CHAT_DOCUMENT_MAX_BYTES
    return f"the file is {size / 1_000_000:.1f} MB; documents are limited to {limit / 1e6:g} MB."
