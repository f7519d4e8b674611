"""Documents made on the spot for the tests: PDFs with a text layer, scanned pages (a picture
and no text), an encrypted PDF, Word files, a zip bomb dressed as one, CSV. Nothing is
checked in."""

import io
import zipfile

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw


def pdf(pages: list[str | None]) -> bytes:
    """One page per entry: its text as a text layer, or None for a scanned page (a picture
    of a page, with no text layer at all)."""
    out = FPDF()
    out.set_font("Helvetica", size=11)
    for text in pages:
        out.add_page()
        if text is None:
            out.image(scan(), x=10, y=10, w=190)
        else:
            out.multi_cell(0, 6, text)
    return bytes(out.output())


def scan() -> Image.Image:
    """A grey page with dark bars where lines of text would be: what a scanner makes."""
    im = Image.new("RGB", (850, 1100), (235, 235, 230))
    draw = ImageDraw.Draw(im)
    for y in range(100, 1000, 40):
        draw.rectangle((80, y, 760, y + 14), fill=(40, 40, 40))
    return im


def encrypted_pdf() -> bytes:
    out = FPDF()
    out.set_encryption(owner_password="owner", user_password="secret")
    out.set_font("Helvetica", size=11)
    out.add_page()
    out.multi_cell(0, 6, "Confidential.")
    return bytes(out.output())


def docx_file(pages: list[list[str]], table: list[list[str]] | None = None) -> bytes:
    """Paragraphs, with a page break between pages, and an optional table at the end."""
    document = docx.Document()
    for i, paragraphs in enumerate(pages):
        for text in paragraphs:
            document.add_paragraph(text)
        if i < len(pages) - 1:
            document.add_page_break()
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_bomb() -> bytes:
    """A zip with a Word document's name in it whose document.xml inflates 1000-fold."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b" " * 20_000_000)
    return out.getvalue()


def csv_file(rows: int) -> bytes:
    lines = ["city,country,population"]
    lines += [f"City {i},Country {i % 7},{1000 + i}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def zip_without_document() -> bytes:
    """A zip that is not a Word document (no word/document.xml)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return out.getvalue()


def pdf_page_count(data_url: str) -> int:
    """Pages of a PDF sent as a data URL (what the fake OCR server received)."""
    import base64

    import pypdfium2

    pdf = pypdfium2.PdfDocument(base64.b64decode(data_url.split(",", 1)[1]))
    try:
        return len(pdf)
    finally:
        pdf.close()
