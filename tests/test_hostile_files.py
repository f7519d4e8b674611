"""The hostile-file corpus (tests/hostilefiles.py) sent as a user would, through the upload
endpoints and the job worker's reading: every file is answered within its seconds, with an
error naming the file and the limit (or accepted, when it is within every limit), nothing
half-stored, and the memory of the process that took the upload flat, since the parsing
happens in the sandbox's children."""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations.documents import retrieval
from conversations.documents.ingest import document_ingest
from conversations.documents.reading import prepare_document
from conversations.models import Attachment, Document
from conversations.uploads import document_create
from tests import hostilefiles

pytestmark = pytest.mark.django_db

SECONDS = 8  # CHAT_PARSE_SECONDS here; every answer must come well within it
UNPACKED = 20_000_000  # CHAT_DOCUMENT_MAX_UNPACKED_BYTES here
# What the web process may grow by while a file is parsed: the upload's bytes and their
# copies (request, multipart, the pipe), never the decoded content.
MEMORY_GROWTH = 64 * 2**20


@pytest.fixture(autouse=True)
def limits(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    settings.MISTRAL_API_KEY = ""
    settings.CHAT_PARSE_SECONDS = SECONDS
    settings.CHAT_DOCUMENT_MAX_UNPACKED_BYTES = UNPACKED
    return tmp_path


@pytest.fixture
def client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_watched() -> Iterator[dict]:
    """This process's resident memory sampled every 5 ms; `growth` is the peak over the
    start."""
    start, peak, stop = _resident(), [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _resident())

    sampler = threading.Thread(target=sample)
    sampler.start()
    seen: dict = {}
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()
        seen["growth"] = max(peak[0], _resident()) - start


def posted(client: Client, path: str, name: str, data: bytes):
    """The upload's response, once it came within SECONDS and with this process's memory
    flat."""
    with memory_watched() as memory:
        started = time.monotonic()
        response = client.post(path, {"file": SimpleUploadedFile(name, data)})
        elapsed = time.monotonic() - started
    assert elapsed < SECONDS
    assert memory["growth"] < MEMORY_GROWTH, f"the web process grew {memory['growth']:,} B"
    return response


DOCUMENTS = [
    # name, file, expected code (None: accepted)
    ("markup.docx", lambda: hostilefiles.docx_markup_at_the_limit(UNPACKED), "empty"),
    ("over.docx", lambda: hostilefiles.docx_over_the_limit(UNPACKED), "zip_bomb"),
    ("lying.docx", lambda: hostilefiles.docx_lying_directory(40_000_000), "corrupt"),
    ("ratio.docx", lambda: hostilefiles.docx_ratio_just_under(100), None),
    ("parts.docx", lambda: hostilefiles.docx_many_parts(2000), None),
    ("parts.docx", lambda: hostilefiles.docx_many_parts(2001), "zip_bomb"),
    ("sheet.xlsx", hostilefiles.xlsx_bomb, "unsupported"),
    ("deep.docx", lambda: hostilefiles.docx_deeply_nested(5000), "too_deep"),
    ("laughs.docx", hostilefiles.docx_billion_laughs, "xml_entities"),
    ("breaks.docx", lambda: hostilefiles.docx_page_breaks(501), "too_many_pages"),
    ("pages.pdf", lambda: hostilefiles.pdf_many_pages(60_000), "too_many_pages"),
    ("billion.pdf", hostilefiles.pdf_claiming_a_billion_pages, None),
    ("inflating.pdf", lambda: hostilefiles.pdf_inflating_page(300), None),
    ("polyglot.pdf", hostilefiles.pdf_html_polyglot, None),
    ("polyglot.jpg.txt", hostilefiles.jpeg_zip_html_polyglot, "unsupported"),
]


@pytest.mark.parametrize(("name", "make", "code"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_hostile_document_upload_is_answered_in_seconds_with_memory_flat(
    client, limits, name, make, code
):
    data = make()
    assert len(data) <= 10_000_000  # within the upload size: the parser must meet it
    response = posted(client, "/documents/", name, data)
    if code is None:
        assert response.status_code == 201, response.content
        assert Document.objects.count() == 1
    else:
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == code
        assert error["message"].startswith(f"{name}: ")
        assert not Document.objects.exists()
        assert not [p for p in limits.rglob("*") if p.is_file()]


IMAGES = [
    ("bomb.png", lambda: hostilefiles.png(20_000, 20_000, rows=8), "too_many_pixels"),
    ("bomb.gif", hostilefiles.gif_bomb, "too_many_pixels"),
    ("claims.jpg", lambda: hostilefiles.jpeg_claiming(65_500, 65_500), "too_many_pixels"),
    # 49 megapixels in 50 KB: within the pixel limit, so decoded in full (in a child).
    ("black.png", lambda: hostilefiles.png(7000, 7000), None),
    ("polyglot.jpg", hostilefiles.jpeg_zip_html_polyglot, None),
]


@pytest.mark.parametrize(("name", "make", "code"), IMAGES, ids=[i[0] for i in IMAGES])
def test_hostile_image_upload_is_answered_in_seconds_with_memory_flat(
    client, limits, name, make, code
):
    response = posted(client, "/attachments/", name, make())
    if code is None:
        assert response.status_code == 201, response.content
        attachment = Attachment.objects.get()
        with attachment.sent.open("rb") as f:
            sent = f.read()
        # What the model gets is a fresh encoding: nothing the file carried rides along.
        assert b"PK\x03\x04" not in sent and b"<script" not in sent
    else:
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert (error["code"], error["message"][: len(name) + 2]) == (code, f"{name}: ")
        assert not Attachment.objects.exists()
        assert not [p for p in limits.rglob("*") if p.is_file()]


def test_a_file_past_the_time_limit_is_refused_naming_the_limit(client, settings):
    settings.CHAT_PARSE_SECONDS = 0.3
    data = hostilefiles.docx_markup_at_the_limit(UNPACKED)
    started = time.monotonic()
    response = client.post("/documents/", {"file": SimpleUploadedFile("slow.docx", data)})
    assert time.monotonic() - started < 3
    assert response.json()["error"] == {
        "code": "too_slow",
        "message": "slow.docx: reading it took longer than 0.3 seconds, the limit; it was stopped.",
    }
    assert not Document.objects.exists()


def test_an_image_past_the_memory_limit_is_refused_naming_the_limit(client, settings):
    settings.CHAT_PARSE_MEMORY_MB = 40
    response = client.post(
        "/attachments/", {"file": SimpleUploadedFile("black.png", hostilefiles.png(7000, 7000))}
    )
    assert response.json()["error"] == {
        "code": "too_much_memory",
        "message": "black.png: reading it needed more than 40 MB of memory, the limit; it "
        "was stopped.",
    }
    assert not Attachment.objects.exists()


def test_a_pdf_whose_page_inflates_without_end_fails_in_the_worker_naming_the_limit(user):
    """Its upload check reads only the page count; the worker's reading meets the memory
    limit in a child, and the document keeps only the reason."""
    document = document_create(
        owner=user,
        document=prepare_document(name="inflating.pdf", data=hostilefiles.pdf_inflating_page(300)),
    )
    started = time.monotonic()
    with memory_watched() as memory:
        document_ingest(document_id=document.pk)
    assert time.monotonic() - started < SECONDS
    assert memory["growth"] < MEMORY_GROWTH
    document.refresh_from_db()
    assert (document.status, document.error) == (
        Document.Status.FAILED,
        "inflating.pdf: reading it needed more than 768 MB of memory, the limit; it was stopped.",
    )
    assert not document.pages.exists() and not document.file


def test_a_docx_past_the_character_limit_fails_in_the_worker_naming_the_limit(user, settings):
    document = document_create(
        owner=user,
        document=prepare_document(name="long.docx", data=hostilefiles.docx_ratio_just_under(100)),
    )
    settings.CHAT_DOCUMENT_MAX_CHARACTERS = 100_000
    document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error.startswith("long.docx: the document has more text than the limit")


def test_a_page_picture_past_the_limits_is_refused_and_the_question_still_goes(
    user, client, settings
):
    """A scanned-looking page (no text layer) is sent as its picture; when drawing it
    meets a limit, the reader's page view says so, and the request carries the reason
    in its place instead of failing."""
    document = document_create(
        owner=user,
        document=prepare_document(name="drawing.pdf", data=hostilefiles.pdf_inflating_page(5)),
    )
    document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert [p.source for p in document.pages.all()] == ["page_image"]
    settings.CHAT_PARSE_MEMORY_MB = 40
    reason = "drawing.pdf: reading it needed more than 40 MB of memory, the limit; it was stopped."

    response = client.get(f"/documents/{document.pk}/pages/1/image/")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "too_much_memory", "message": reason}

    plan = retrieval.Plan(
        mode="full", tokens=0, budget=1000, documents=[document], text="", pictures=[(document, 1)]
    )
    parts, left_out = retrieval.document_parts(plan, 8)
    assert parts[1:] == [
        {"type": "text", "text": f"{retrieval.marker('drawing.pdf', 1)} ({reason})"}
    ]
    assert left_out == 0
