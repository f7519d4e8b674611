"""A document's type found from its first bytes (never its name), its check at upload,
and the pages of the formats that are read whole (DOCX and text; a PDF's text layer is
read a range of pages at a time, pdf.texts)."""

from dataclasses import dataclass
from pathlib import Path

from conversations.parsers import pdf
from conversations.parsers.errors import DocumentRejected
from conversations.parsers.text import decode_text, text_pages
from conversations.parsers.word import docx_pages

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv"}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one document may hold: the settings CHAT_DOCUMENT_MAX_PAGES, _CHARACTERS and
    _UNPACKED_BYTES, sent with each call (a child reads no settings)."""

    pages: int
    characters: int
    unpacked: int


def mime_of(name: str, data: bytes) -> str:
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        return DOCX
    return TEXT_TYPES.get(Path(name).suffix.lower(), "text/plain")


def check(name: str, data: bytes, limits: Limits) -> tuple[str, int]:
    """The document's type and page count, once it is known to open and to be within
    the limits; DocumentRejected otherwise."""
    mime = mime_of(name, data)
    if mime == PDF:
        count = pdf.page_count(name, data)
        if count > limits.pages:
            raise DocumentRejected(
                "too_many_pages",
                f"{name}: the document has {count:,} pages; the limit is {limits.pages:,}.",
            )
    else:
        count = len(pages(name, data, mime, limits))
    if count == 0:
        # A PDF of blank pages still counts its pages; only a DOCX or text file with no
        # words in it gets here (however much markup it holds).
        raise DocumentRejected(
            "empty", f"{name}: the document has no text in it, so there is nothing to read."
        )
    return mime, count


def pages(name: str, data: bytes, mime: str, limits: Limits) -> list[str]:
    """The pages of a DOCX or text document."""
    if mime == DOCX:
        return docx_pages(
            name,
            data,
            pages=limits.pages,
            characters=limits.characters,
            unpacked=limits.unpacked,
        )
    return text_pages(
        name,
        decode_text(name, data),
        csv_header=mime == "text/csv",
        pages=limits.pages,
        characters=limits.characters,
    )
