"""Documents a user attaches for questions (PDF, DOCX, plain text, Markdown, CSV): checked by
their content, then read page by page.

The upload is checked on the request path (type sniffed from the bytes, size and page limits,
encrypted or damaged PDFs, DOCX zip bombs) so a bad file is refused with a reason and nothing
is stored. Reading the text (documents/ingest.py) runs later in the job worker: a PDF's
text layer first, and pages without usable text go to OCR or are sent as pictures.

A DOCX or text file has no pages of its own; it is cut at explicit page breaks and every
PAGE_CHARS characters, so a citation still points at a small piece of it.

PDFium is not thread-safe (pypdfium2's documentation says so), so every call into it holds
_PDFIUM; it is taken per page, so a long ingest never holds up an upload for long.

Over 400 lines: the checks an upload must pass and the readers of each format share their
limits and their page model, and are read together when a format is added.
"""

import base64
import io
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import docx
import mistral_common
import pypdfium2 as pdfium
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from PIL import Image

from conversations.models import Document, DocumentPage

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv"}
ACCEPTED = "PDF, Word (.docx), text, Markdown or CSV"

# A page of a DOCX or text file: about a printed page.
PAGE_CHARS = 3000
# A PDF page with fewer letters and digits than this in its text layer is a scan or a
# photo: its text comes from OCR or its picture.
MIN_TEXT_LAYER_CHARS = 20
# DOCX is a zip: refuse one that would inflate past these before any XML is parsed.
MAX_DOCX_UNCOMPRESSED = 100_000_000
MAX_DOCX_RATIO = 100
MAX_DOCX_ENTRIES = 2000
# Pages are rendered at most this large (the vision models' limit, images.py).
PAGE_IMAGE_SIDE = 1540

_PDFIUM = threading.Lock()
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DocumentRejected(Exception):
    """An upload we will not store, or a document that could not be read; `message` names
    the file and the reason, for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    """Find what `data` is from its first bytes (never its name) and check it opens and is
    within the page limit."""
    if data.startswith(b"%PDF-"):
        mime, pages = PDF, _pdf_page_count(name, data)
    elif data.startswith(b"PK\x03\x04"):
        mime, pages = DOCX, len(_docx_pages(name, data))
    else:
        text = _decode_text(name, data)
        mime = TEXT_TYPES.get(Path(name).suffix.lower(), "text/plain")
        pages = len(_text_pages(text, csv_header=mime == "text/csv"))
    if pages == 0:
        raise DocumentRejected("empty", f"{name}: the document has no pages.")
    if pages > settings.CHAT_DOCUMENT_MAX_PAGES:
        raise DocumentRejected(
            "too_many_pages",
            f"{name}: the document has {pages:,} pages; the limit is "
            f"{settings.CHAT_DOCUMENT_MAX_PAGES:,}.",
        )
    return PreparedDocument(name=name, data=data, mime=mime, page_count=pages)


def read_pages(
    document: Document, *, scanned: Callable[[list[int]], list[PageText]]
) -> Iterator[PageText]:
    """The document's text, page by page, in order. A PDF page without a usable text layer
    is collected and handed to `scanned` (OCR, or the page's picture) in batches as the
    reading goes on. Raises DocumentRejected when the file cannot be read."""
    with document.file.open("rb") as f:
        data = f.read()
    name = document.name
    if document.mime == PDF:
        yield from _pdf_pages(name, data, scanned)
    elif document.mime == DOCX:
        for number, text in enumerate(_docx_pages(name, data), 1):
            yield PageText(number, text, DocumentPage.Source.TEXT_LAYER)
    else:
        text = _decode_text(name, data)
        pages = _text_pages(text, csv_header=document.mime == "text/csv")
        for number, page in enumerate(pages, 1):
            yield PageText(number, page, DocumentPage.Source.TEXT_LAYER)


# PDF


def _open_pdf(name: str, data: bytes) -> pdfium.PdfDocument:
    """Call holding _PDFIUM."""
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as err:
        if "password" in str(err).lower():
            raise DocumentRejected(
                "encrypted",
                f"{name}: the PDF is protected by a password. Save an unprotected copy and "
                "attach that.",
            ) from None
        raise DocumentRejected(
            "corrupt", f"{name}: the PDF is damaged or incomplete and cannot be read."
        ) from None


def _pdf_page_count(name: str, data: bytes) -> int:
    with _PDFIUM:
        pdf = _open_pdf(name, data)
        try:
            return len(pdf)
        finally:
            pdf.close()


def _pdf_pages(
    name: str, data: bytes, scanned: Callable[[list[int]], list[PageText]]
) -> Iterator[PageText]:
    with _PDFIUM:
        pdf = _open_pdf(name, data)
    try:
        with _PDFIUM:
            count = len(pdf)
        waiting: list[int] = []
        for number in range(1, count + 1):
            with _PDFIUM:
                text = _page_text(name, pdf, number)
            if len(re.findall(r"\w", text)) >= MIN_TEXT_LAYER_CHARS:
                yield PageText(number, text, DocumentPage.Source.TEXT_LAYER)
            else:
                waiting.append(number)
            if len(waiting) >= settings.CHAT_OCR_BATCH_PAGES:
                yield from scanned(waiting)
                waiting = []
        if waiting:
            yield from scanned(waiting)
    finally:
        with _PDFIUM:
            pdf.close()


def _page_text(name: str, pdf: pdfium.PdfDocument, number: int) -> str:
    try:
        page = pdf[number - 1]
        textpage = page.get_textpage()
        text = textpage.get_text_bounded()
        textpage.close()
        page.close()
    except pdfium.PdfiumError:
        raise DocumentRejected(
            "corrupt", f"{name}: page {number} of the PDF is damaged and cannot be read."
        ) from None
    return clean_text(text)


def pdf_subset(document: Document, numbers: list[int]) -> bytes:
    """A PDF holding only these pages of the document, in order: what OCR is sent, so a
    100-page PDF with two scanned pages costs two pages."""
    with document.file.open("rb") as f:
        data = f.read()
    with _PDFIUM:
        source = _open_pdf(document.name, data)
        subset = pdfium.PdfDocument.new()
        try:
            subset.import_pages(source, [n - 1 for n in numbers])
            out = io.BytesIO()
            subset.save(out)
        finally:
            subset.close()
            source.close()
    return out.getvalue()


def pdf_data_url(data: bytes) -> str:
    """The form OCR takes a document in; built only while its request is."""
    return "data:application/pdf;base64," + base64.b64encode(data).decode("ascii")


def page_png(document: Document, number: int) -> bytes:
    """A PDF page rendered as PNG, its longer side PAGE_IMAGE_SIDE pixels: for a vision
    model (a scanned page, a chart) and for the reader's page view. Rendered when needed,
    never stored; reads the file, so call it off the event loop."""
    with document.file.open("rb") as f:
        data = f.read()
    with _PDFIUM:
        pdf = _open_pdf(document.name, data)
        try:
            page = pdf[number - 1]
            width, height = page.get_size()
            bitmap = page.render(scale=PAGE_IMAGE_SIDE / max(width, height, 1))
            image: Image.Image = bitmap.to_pil().convert("RGB")
            page.close()
        finally:
            pdf.close()
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def page_image_data_url(document: Document, number: int) -> str:
    return "data:image/png;base64," + base64.b64encode(page_png(document, number)).decode("ascii")


# DOCX


def _docx_pages(name: str, data: bytes) -> list[str]:
    _check_zip(name, data)
    try:
        parsed = docx.Document(io.BytesIO(data))
    except Exception:  # python-docx raises many kinds for a broken package
        raise DocumentRejected(
            "corrupt", f"{name}: the Word document is damaged and cannot be read."
        ) from None
    pages: list[str] = []
    current: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal current, size
        text = "\n".join(current).strip()
        if text:
            pages.append(text)
        current, size = [], 0

    for block in parsed.iter_inner_content():
        if isinstance(block, docx.table.Table):
            lines = [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
        else:
            lines = [block.text]
        for line in lines:
            if size + len(line) > PAGE_CHARS and current:
                flush()
            current.append(clean_text(line))
            size += len(line) + 1
        if not isinstance(block, docx.table.Table) and (
            block.contains_page_break or block._p.xpath('.//w:br[@w:type="page"]')
        ):
            flush()  # a page break typed in Word, or one Word rendered when it saved
    flush()
    return pages


def _check_zip(name: str, data: bytes) -> None:
    """Refuse a zip that is not a Word document or would inflate to far more than it
    weighs, from its directory alone."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise DocumentRejected(
            "corrupt", f"{name}: the file is damaged and cannot be read."
        ) from None
    names = {entry.filename for entry in entries}
    if "word/document.xml" not in names:
        raise DocumentRejected(
            "unsupported", f"{name}: not a document we accept. Send {ACCEPTED} files."
        )
    total = sum(entry.file_size for entry in entries)
    packed = sum(entry.compress_size for entry in entries) or 1
    if (
        len(entries) > MAX_DOCX_ENTRIES
        or total > MAX_DOCX_UNCOMPRESSED
        or any(
            entry.file_size > 1_000_000
            and entry.file_size > MAX_DOCX_RATIO * max(entry.compress_size, 1)
            for entry in entries
        )
    ):
        raise DocumentRejected(
            "zip_bomb",
            f"{name}: the Word document would unpack to {total / 1_000_000:,.1f} MB from "
            f"{packed / 1_000_000:,.1f} MB, as a zip bomb does; it was refused.",
        )


# Text, Markdown, CSV


def _decode_text(name: str, data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252; anything with NUL or many control
    bytes is binary, not text."""
    unsupported = DocumentRejected(
        "unsupported", f"{name}: not a document we accept. Send {ACCEPTED} files."
    )
    if b"\x00" in data[:65536]:
        raise unsupported
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise unsupported from None
    if len(_CONTROL.findall(text[:65536])) > len(text[:65536]) // 100:
        raise unsupported
    return text.replace("\r\n", "\n")


def _text_pages(text: str, *, csv_header: bool) -> list[str]:
    """Cut at form feeds and at line ends every PAGE_CHARS characters. A CSV page starts
    with the header row, so each page still says what its columns are."""
    header = ""
    lines = text.split("\n")
    if csv_header and lines:
        header, lines = lines[0], lines[1:]
    pages: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        parts = line.split("\f")
        for i, part in enumerate(parts):
            if (i > 0 or size + len(part) > PAGE_CHARS) and current:
                pages.append("\n".join(current))
                current, size = [], 0
            while len(part) > PAGE_CHARS:  # one enormous line
                pages.append(part[:PAGE_CHARS])
                part = part[PAGE_CHARS:]
            current.append(part)
            size += len(part) + 1
    if current:
        pages.append("\n".join(current))
    pages = [clean_text(p).strip() for p in pages]
    pages = [p for p in pages if p]
    if header:
        pages = [f"{header}\n{p}" for p in pages] or [header]
    return pages


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


def clean_text(text: str) -> str:
    """Text as stored: Unix line ends, no control characters (they break JSON and XML)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def display_name(name: str | None) -> str:
    name = (name or "document").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return (name or "document")[:120]


def _too_large(size: int) -> str:
    limit = settings.CHAT_DOCUMENT_MAX_BYTES
    return f"the file is {size / 1_000_000:.1f} MB; documents are limited to {limit / 1e6:g} MB."
