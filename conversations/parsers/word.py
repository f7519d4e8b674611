"""Word documents (DOCX): the text of word/document.xml, read as a stream.

A DOCX is a zip of XML. It is refused from the zip's directory alone when it would inflate
past the limit or far past its own size (a zip bomb); then document.xml is inflated through
a counter that stops at the limit whatever the directory claimed, and parsed by lxml's
iterparse, every element dropped once read. So memory stays near nothing whatever the
file's shape, the page and character limits stop the reading as soon as they are passed,
and the time is linear in what is read: 1.5 s of CPU and 22 MB for 30 MB of XML, where
python-docx (used before) built the whole tree and ran an XPath query per paragraph, and
took 4½ minutes and a gigabyte.

The parser resolves no entities, loads no DTD and reads nothing from the network, and
libxml2's own limits stand (entity amplification, 256 levels deep): a billion-laughs file or
one nested thousands deep is refused at once.
"""

import io
import zipfile
from typing import IO

from lxml import etree

from conversations.parsers.errors import DocumentRejected
from conversations.parsers.text import Pager, clean_text, unsupported

# A DOCX with more parts than this, or a part inflating more than MAX_RATIO-fold past
# 1 MB, is not a Word document anyone typed.
MAX_ENTRIES = 2000
MAX_RATIO = 100

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_P, _T, _TAB, _BR, _CR = f"{_W}p", f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr"
_TC, _TR, _RENDERED_BREAK = f"{_W}tc", f"{_W}tr", f"{_W}lastRenderedPageBreak"
_TYPE = f"{_W}type"


def docx_pages(name: str, data: bytes, *, pages: int, characters: int, unpacked: int) -> list[str]:
    """The document's pages; DocumentRejected when it is not a Word document, is damaged,
    or passes a limit (`unpacked` bytes inflated, `pages`, `characters`)."""
    damaged = DocumentRejected(
        "corrupt", f"{name}: the Word document is damaged and cannot be read."
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_directory(name, archive, unpacked)
            with archive.open("word/document.xml") as raw:
                return _read(name, _Capped(name, raw, unpacked), pages, characters)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise damaged from None
    except etree.XMLSyntaxError as err:
        reason = str(err).lower()
        if "depth" in reason:
            raise DocumentRejected(
                "too_deep",
                f"{name}: the Word document's XML is nested deeper than the 256 levels any "
                "real document needs. It was refused.",
            ) from None
        if "entity" in reason:
            raise DocumentRejected(
                "xml_entities",
                f"{name}: the Word document's XML declares entities that expand far past its "
                "size, as a billion-laughs attack does. It was refused.",
            ) from None
        raise damaged from None


def _check_directory(name: str, archive: zipfile.ZipFile, unpacked: int) -> None:
    """Refuse from the directory alone: not a Word document, or a zip bomb."""
    entries = archive.infolist()
    if "word/document.xml" not in {entry.filename for entry in entries}:
        raise unsupported(name)
    total = sum(entry.file_size for entry in entries)
    packed = sum(entry.compress_size for entry in entries) or 1
    if len(entries) > MAX_ENTRIES:
        reason = f"has {len(entries):,} parts; a Word document has at most {MAX_ENTRIES:,}"
    elif total > unpacked:
        reason = (
            f"would unpack to {total / 1e6:,.1f} MB; the limit is {unpacked / 1e6:,.0f} MB unpacked"
        )
    elif any(
        entry.file_size > 1_000_000 and entry.file_size > MAX_RATIO * max(entry.compress_size, 1)
        for entry in entries
    ):
        reason = (
            f"would unpack to {total / 1e6:,.1f} MB from {packed / 1e6:,.1f} MB, as a zip bomb "
            f"does; a part may grow at most {MAX_RATIO}-fold"
        )
    else:
        return
    raise DocumentRejected("zip_bomb", f"{name}: the Word document {reason}. It was refused.")


class _Capped(io.RawIOBase):
    """A zip member's inflated bytes, refused past `limit`: the directory's sizes are the
    sender's word, this count is not."""

    def __init__(self, name: str, raw: IO[bytes], limit: int) -> None:
        self.name_ = name
        self.raw = raw
        self.left = limit
        self.limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(min(len(buffer), 1 << 16))
        self.left -= len(data)
        if self.left < 0:
            raise DocumentRejected(
                "too_large_unpacked",
                f"{self.name_}: the Word document's text unpacks to more than "
                f"{self.limit / 1e6:,.0f} MB, the limit.",
            )
        buffer[: len(data)] = data
        return len(data)


def _read(name: str, source: IO[bytes], pages: int, characters: int) -> list[str]:
    pager = Pager(name, pages=pages, characters=characters)
    paragraphs: list[list[str]] = []  # the open paragraphs' text, innermost last
    cells: list[list[str]] = []  # the open table cells' lines
    rows: list[list[str]] = []  # the open table rows' cells
    broken: list[bool] = []  # whether each open paragraph holds a page break

    def emit(line: str) -> None:
        if cells:
            cells[-1].append(line)
        else:
            pager.line(clean_text(line))

    events = etree.iterparse(
        source,
        events=("start", "end"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    for event, element in events:
        tag = element.tag
        if event == "start":
            if tag == _P:
                paragraphs.append([])
                broken.append(False)
            elif tag == _TC:
                cells.append([])
            elif tag == _TR:
                rows.append([])
            continue
        if tag == _T:
            if paragraphs and element.text:
                paragraphs[-1].append(element.text)
        elif tag == _TAB:
            if paragraphs:
                paragraphs[-1].append("\t")
        elif tag in (_BR, _CR):
            if element.get(_TYPE) == "page":
                if broken:
                    broken[-1] = True
            elif paragraphs:
                paragraphs[-1].append("\n")
        elif tag == _RENDERED_BREAK:
            if broken:
                broken[-1] = True  # a page break Word drew when it last saved
        elif tag == _P:
            text, page_break = "".join(paragraphs.pop()), broken.pop()
            emit(text)
            if page_break and not cells:
                pager.page_break()
        elif tag == _TC:
            lines = cells.pop()
            if rows:
                rows[-1].append("\n".join(lines).strip())
        elif tag == _TR:
            emit(" | ".join(rows.pop()))
        # What is read is dropped: this element's content, and the sibling before it
        # (emptied at its own end), so the tree never holds more than the open path.
        element.clear(keep_tail=False)
        previous = element.getprevious()
        if previous is not None:
            element.getparent().remove(previous)
    return pager.finish()
