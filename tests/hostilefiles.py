"""Hostile files, made here byte by byte: zip bombs just under and over each limit, XML that
nests or expands without end, PDFs with huge page counts or inflating content, image bombs
and polyglots. Each is small to send and built to cost its reader as much as the limits
allow (tests/test_hostile_files.py)."""

import io
import random
import struct
import zipfile
import zlib

from PIL import Image

_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


# Word documents


def docx(xml: bytes, *, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip with `xml` as word/document.xml (and `extra` parts), deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", xml)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def document_xml(body: bytes, *, doctype: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0"?>'
        + doctype
        + f"<w:document {_W}><w:body>".encode()
        + body
        + b"</w:body></w:document>"
    )


def _random_runs(size: int, seed: int) -> bytes:
    """Empty runs with random ids: markup that compresses only about four-fold and holds
    no text, so no page or character limit stops the reading early."""
    rng = random.Random(seed)
    return b"".join(b'<w:r w:rsidR="%08X"/>' % rng.getrandbits(32) for _ in range(size // 25))


def docx_markup_at_the_limit(unpacked: int) -> bytes:
    """Just under the unpacked limit, all in one paragraph: the most XML a reader must
    walk without any limit but time stopping it."""
    return docx(document_xml(b"<w:p>" + _random_runs(unpacked - 200_000, 1) + b"</w:p>"))


def docx_over_the_limit(unpacked: int) -> bytes:
    """Just over the unpacked limit, which the zip's directory says."""
    return docx(document_xml(_random_runs(unpacked + 100_000, 2)))


def docx_lying_directory(size: int) -> bytes:
    """A part of `size` bytes of spaces whose directory entries claim 100 bytes: a reader
    trusting the sizes would inflate it all."""
    data = bytearray(docx(document_xml(b"<w:p>" + b" " * size + b"</w:p>")))
    real = len(document_xml(b"<w:p>" + b" " * size + b"</w:p>"))
    claimed = struct.pack("<I", 100)
    # The size appears in the local header and the central directory, after the CRC and
    # the compressed size; patch every place it is written.
    needle = struct.pack("<I", real)
    start = 0
    while (at := data.find(needle, start)) != -1:
        data[at : at + 4] = claimed
        start = at + 4
    return bytes(data)


def docx_ratio_just_under(ratio: int) -> bytes:
    """One part over 1 MB inflating close to `ratio`-fold (the most allowed): text pages
    that repeat, with enough noise to stay under the ratio."""
    rng = random.Random(3)
    paragraphs = []
    for i in range(4000):
        noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
        paragraphs.append(
            f"<w:p><w:r><w:t>{'The same sentence again. ' * 12}{noise}{i}</w:t></w:r></w:p>"
        )
    return docx(document_xml("".join(paragraphs).encode()))


def docx_many_parts(count: int) -> bytes:
    """A Word document with `count` parts in all (XLSX files have thousands)."""
    extra = {f"word/media/part{i}.xml": b"<x/>" for i in range(count - 2)}
    return docx(document_xml(b"<w:p><w:r><w:t>Hello.</w:t></w:r></w:p>"), extra=extra)


def xlsx_bomb() -> bytes:
    """An XLSX-style zip (a workbook, a sheet inflating 1000-fold), not a Word document."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"<row/>" * 5_000_000)
    return out.getvalue()


def docx_deeply_nested(depth: int) -> bytes:
    rng = random.Random(4)
    opening = b"".join(b'<w:p w:rsidR="%08X">' % rng.getrandbits(32) for _ in range(depth))
    return docx(document_xml(opening + b"</w:p>" * depth))


def docx_billion_laughs() -> bytes:
    entities = b'<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%s;" % (b"%d" % (i - 1) if i > 1 else b"")) * 10)
        for i in range(1, 10)
    )
    return docx(
        document_xml(
            b"<w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>",
            doctype=b"<!DOCTYPE w:document [" + entities + b"]>",
        )
    )


def docx_page_breaks(count: int) -> bytes:
    page = b'<w:p><w:r><w:t>Page.</w:t><w:br w:type="page"/></w:r></w:p>'
    return docx(document_xml(page * count))


# PDFs


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog), with its xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def pdf_many_pages(count: int) -> bytes:
    """`count` real (empty) pages."""
    kids = b" ".join(b"%d 0 R" % (n + 3) for n in range(count))
    pages = [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"] * count
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count %d /Kids [%s] >>" % (count, kids),
            *pages,
        ]
    )


def pdf_claiming_a_billion_pages() -> bytes:
    """A page tree whose /Count says a billion, over one page."""
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count 1000000000 /Kids [3 0 R] >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
        ]
    )


def pdf_inflating_page(megabytes: int) -> bytes:
    """One page whose content stream is about 1 MB deflated and `megabytes` MB inflated,
    all drawing operators: a reader must inflate and interpret it to find the text."""
    chunk = b"0 0 m 1 1 l S\n" * 75_000  # about 1 MB
    packer = zlib.compressobj(9)
    stream = b"".join(packer.compress(chunk) for _ in range(megabytes)) + packer.flush()
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
        ]
    )


def pdf_html_polyglot() -> bytes:
    """A one-page PDF that is also an HTML page with a script."""
    script = b"<html><body><script>document.title='owned'</script></body></html>"
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
            b"<< /Length %d >>\nstream\n" % len(script) + script + b"\nendstream",
        ]
    )


# Images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png(width: int, height: int, *, rows: int | None = None) -> bytes:
    """A greyscale PNG of `width`×`height` black pixels; only `rows` rows of data when
    given (the header alone is what a size check reads)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    data += packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def gif_bomb() -> bytes:
    """A 1×1 picture on a 65,535×65,535 logical screen."""
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0)
        + b"\x00\x00\x00\xff\xff\xff"
        + b","
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00;"
    )


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG", quality=90)
    return out.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims `width`×`height`."""
    data = bytearray(small_jpeg())
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_zip_html_polyglot() -> bytes:
    """A JPEG, then a zip, then a script: a valid image, archive and page at once."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.txt", "hidden")
    return small_jpeg() + archive.getvalue() + b"<script>alert(document.cookie)</script>"
