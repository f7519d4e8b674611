"""Text files (plain, Markdown, CSV) decoded, and the pages every format without pages of
its own is cut into.

A DOCX or text file has no pages; it is cut at explicit page breaks and every PAGE_CHARS
characters, so a citation still points at a small piece of it. The pager stops at the
page and character limits as soon as they are passed, not after the whole file is read.
"""

import re

from conversations.parsers.errors import DocumentRejected

ACCEPTED = "PDF, Word (.docx), text, Markdown or CSV"
# A page of a DOCX or text file: about a printed page.
PAGE_CHARS = 3000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Text as stored: Unix line ends, no control characters (they break JSON and XML)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def unsupported(name: str) -> DocumentRejected:
    return DocumentRejected(
        "unsupported", f"{name}: not a document we accept. Send {ACCEPTED} files."
    )


def too_much_text(name: str, page: int) -> DocumentRejected:
    """Past CHAT_DOCUMENT_MAX_CHARACTERS, on `page`."""
    return DocumentRejected(
        "too_much_text",
        f"{name}: the document has more text than the limit allows (it is reached on page {page}).",
    )


def decode_text(name: str, data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252; anything with NUL or many control
    bytes is binary, not text."""
    if b"\x00" in data[:65536]:
        raise unsupported(name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise unsupported(name) from None
    if len(_CONTROL.findall(text[:65536])) > len(text[:65536]) // 100:
        raise unsupported(name)
    return text.replace("\r\n", "\n")


def text_pages(name: str, text: str, *, csv_header: bool, pages: int, characters: int) -> list[str]:
    """Cut at form feeds and at line ends every PAGE_CHARS characters. A CSV page starts
    with the header row, so each page still says what its columns are."""
    lines = text.split("\n")
    header = lines.pop(0) if csv_header and lines else ""
    pager = Pager(name, pages=pages, characters=characters)
    for line in lines:
        for i, part in enumerate(line.split("\f")):
            if i:
                pager.page_break()
            pager.line(part)
    found = pager.finish()
    if header:
        found = [f"{header}\n{p}" for p in found] or [header]
    return found


class Pager:
    """Lines gathered into pages of about PAGE_CHARS characters, stopping with
    DocumentRejected once there are more than `pages` pages or `characters` characters."""

    def __init__(self, name: str, *, pages: int, characters: int) -> None:
        self.name = name
        self.max_pages = pages
        self.characters_left = characters
        self.pages: list[str] = []
        self.current: list[str] = []
        self.size = 0

    def line(self, text: str) -> None:
        self.characters_left -= len(text)
        if self.characters_left < 0:
            raise too_much_text(self.name, len(self.pages) + 1)
        if self.size + len(text) > PAGE_CHARS and self.current:
            self.page_break()
        while len(text) > PAGE_CHARS:  # one enormous line
            self.current.append(text[:PAGE_CHARS])
            self.page_break()
            text = text[PAGE_CHARS:]
        self.current.append(text)
        self.size += len(text) + 1

    def page_break(self) -> None:
        page = clean_text("\n".join(self.current)).strip()
        self.current, self.size = [], 0
        if not page:
            return
        self.pages.append(page)
        if len(self.pages) > self.max_pages:
            raise DocumentRejected(
                "too_many_pages",
                f"{self.name}: the document has more than {self.max_pages:,} pages; the "
                f"limit is {self.max_pages:,}.",
            )

    def finish(self) -> list[str]:
        self.page_break()
        return self.pages
