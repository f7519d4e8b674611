"""PDFs through PDFium (pypdfium2): page counts, text layers, page pictures and subsets.

Runs in a sandbox child, one call at a time, so PDFium (which is not thread-safe) is never
entered twice at once. Text is read a range of pages per call: the parent shows progress
between calls, and its character limit follows the file across them.
"""

import io
import re

import pypdfium2 as pdfium
from PIL import Image

from conversations.parsers.errors import DocumentRejected
from conversations.parsers.text import clean_text, too_much_text

# A page with fewer letters and digits than this in its text layer is a scan or a photo.
MIN_TEXT_LAYER_CHARS = 20


def open_pdf(name: str, data: bytes) -> pdfium.PdfDocument:
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


def page_count(name: str, data: bytes) -> int:
    pdf = open_pdf(name, data)
    try:
        return len(pdf)
    finally:
        pdf.close()


def texts(name: str, data: bytes, first: int, last: int, characters: int) -> list[str | None]:
    """The text layer of pages `first` to `last` (from 1), None for a page without a usable
    one (a scan). Raises DocumentRejected past `characters` characters in all."""
    pdf = open_pdf(name, data)
    try:
        found: list[str | None] = []
        for number in range(first, min(last, len(pdf)) + 1):
            text = _page_text(name, pdf, number)
            characters -= len(text)
            if characters < 0:
                raise too_much_text(name, number)
            usable = len(re.findall(r"\w", text)) >= MIN_TEXT_LAYER_CHARS
            found.append(text if usable else None)
        return found
    finally:
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


def page_png(name: str, data: bytes, number: int, side: int) -> bytes:
    """Page `number` as PNG, its longer side `side` pixels."""
    pdf = open_pdf(name, data)
    try:
        page = pdf[number - 1]
        width, height = page.get_size()
        bitmap = page.render(scale=side / max(width, height, 1))
        image: Image.Image = bitmap.to_pil().convert("RGB")
        page.close()
    except pdfium.PdfiumError:
        raise DocumentRejected(
            "corrupt", f"{name}: page {number} of the PDF is damaged and cannot be drawn."
        ) from None
    finally:
        pdf.close()
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def subset(name: str, data: bytes, numbers: list[int]) -> bytes:
    """A PDF of only these pages, in order."""
    source = open_pdf(name, data)
    part = pdfium.PdfDocument.new()
    try:
        part.import_pages(source, [n - 1 for n in numbers])
        out = io.BytesIO()
        part.save(out)
    finally:
        part.close()
        source.close()
    return out.getvalue()
