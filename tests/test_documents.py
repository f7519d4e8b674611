"""Documents: checked on upload (each bad input refused with its reason, nothing stored), read
page by page in a worker with the source of each page's text, OCR validated against
Mistral's spec, and the ingest's progress and failures as the composer sees them."""

import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations.documents import reading as documents
from conversations.documents.ingest import document_ingest
from conversations.documents.reading import DocumentRejected, prepare_document
from conversations.models import ApiCall, Document, DocumentPage
from conversations.uploads import document_create
from tests import documentfiles
from tests.fake_mistral import Reply
from tests.helpers import message_create

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/documents/"
PAGES = [
    "Quarterly report. Revenue grew by twelve percent in the first quarter of the year.",
    "Page two explains that the Lyon office opened in March with forty engineers on staff.",
    "Page three lists the risks: currency exchange, supply chains and hiring in a tight market.",
]


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    settings.MISTRAL_API_KEY = ""
    return tmp_path


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()]


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client: Client, name: str, data: bytes):
    return client.post(UPLOAD_URL, {"file": SimpleUploadedFile(name, data)})


def ingested(user, name: str, data: bytes) -> Document:
    document = document_create(owner=user, document=prepare_document(name=name, data=data))
    document_ingest(document_id=document.pk)
    document.refresh_from_db()
    return document


def page_rows(document: Document) -> list[tuple[int, str, str]]:
    return [(p.number, p.source, p.text) for p in document.pages.order_by("number")]


# Reading, page by page


def test_pdf_text_layer_pages_keep_their_numbers(user):
    document = ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    rows = page_rows(document)
    assert [(n, s) for n, s, _ in rows] == [(1, "text_layer"), (2, "text_layer"), (3, "text_layer")]
    assert "Lyon office opened in March" in rows[1][2]
    assert (document.status, document.page_count, document.pages_done) == ("ready", 3, 3)
    assert document.tokens == sum(p.tokens for p in document.pages.all()) > 0
    assert document.pages.get(number=2).tokens == documents.count_tokens(rows[1][2])


def test_scanned_page_without_api_key_is_sent_as_a_picture(user):
    document = ingested(user, "scan.pdf", documentfiles.pdf([PAGES[0], None]))
    assert page_rows(document)[1] == (2, "page_image", "")
    assert page_rows(document)[0][1] == "text_layer"
    assert not ApiCall.objects.exists()


def test_scanned_page_goes_to_ocr_with_a_valid_request(user, fake_mistral):
    fake_mistral.ocr_text = lambda index: f"Scanned invoice number 4711 (OCR page {index + 1})."
    document = ingested(user, "scan.pdf", documentfiles.pdf([PAGES[0], None, PAGES[2]]))

    assert page_rows(document)[1] == (2, "ocr", "Scanned invoice number 4711 (OCR page 1).")
    assert [r[1] for r in page_rows(document)] == ["text_layer", "ocr", "text_layer"]
    (request,) = [r for r in fake_mistral.requests if r.path == "/v1/ocr"]
    body = request.json
    assert set(body) == {"model", "document"}
    assert body["model"] == "mistral-ocr-latest"
    assert body["document"]["type"] == "document_url"
    assert body["document"]["document_name"] == "scan.pdf"
    assert body["document"]["document_url"].startswith("data:application/pdf;base64,")
    # Only the scanned page is sent, as a one-page PDF.
    assert documentfiles.pdf_page_count(body["document"]["document_url"]) == 1
    call = ApiCall.objects.get()
    assert (call.kind, call.pages, call.status, call.user) == ("ocr", 1, "complete", user)


def test_ocr_failure_falls_back_to_the_page_picture(user, fake_mistral):
    fake_mistral.ocr_error = Reply.error(400, {"message": "Failed to fetch document"})
    document = ingested(user, "scan.pdf", documentfiles.pdf([None]))
    assert page_rows(document) == [(1, "page_image", "")]
    assert ApiCall.objects.get().status == "failed"


def test_docx_pages_follow_page_breaks_and_keep_tables(user):
    data = documentfiles.docx_file(
        [["Introduction to the plan.", "Second paragraph."], ["The budget is 3 million."]],
        table=[["Region", "Sales"], ["North", "120"]],
    )
    document = ingested(user, "plan.docx", data)
    rows = page_rows(document)
    assert document.mime == documents.DOCX
    assert [n for n, _, _ in rows] == [1, 2]
    assert rows[0][2] == "Introduction to the plan.\nSecond paragraph."
    assert "The budget is 3 million." in rows[1][2]
    assert "North | 120" in rows[1][2]
    assert {s for _, s, _ in rows} == {"text_layer"}


def test_csv_pages_each_start_with_the_header(user):
    document = ingested(user, "cities.csv", documentfiles.csv_file(400))
    rows = page_rows(document)
    assert document.mime == "text/csv"
    assert len(rows) > 1
    assert all(text.startswith("city,country,population\n") for _, _, text in rows)
    assert "City 399,Country 0,1399" in rows[-1][2]


def test_markdown_and_text_are_sniffed_from_content_not_name(user):
    document = ingested(user, "notes.md", b"# Notes\n\nThe launch is on Tuesday.\n")
    assert (document.mime, page_rows(document)) == (
        "text/markdown",
        [(1, "text_layer", "# Notes\n\nThe launch is on Tuesday.")],
    )
    # A PDF named .txt is read as the PDF it is.
    assert prepare_document(name="x.txt", data=documentfiles.pdf(PAGES)).mime == documents.PDF


# Bad inputs: each refused with the file's name and the reason, nothing stored


@pytest.mark.parametrize(
    ("name", "data", "code", "words"),
    [
        ("secret.pdf", documentfiles.encrypted_pdf(), "encrypted", "protected by a password"),
        ("broken.pdf", documentfiles.pdf(PAGES)[:400], "corrupt", "damaged"),
        ("bomb.docx", documentfiles.docx_bomb(), "zip_bomb", "zip bomb"),
        ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "unsupported", "not a document"),
        ("empty.txt", b"", "empty", "empty"),
        ("fake.docx", documentfiles.zip_without_document(), "unsupported", "not a document"),
    ],
)
def test_bad_upload_is_refused_with_its_reason(user, media, name, data, code, words):
    response = upload(signed_in(user), name, data)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"{name}: ")
    assert words in error["message"]
    assert not Document.objects.exists()
    assert stored_files(media) == []


def test_two_documents_in_one_upload_are_refused_naming_the_limit(user, media):
    files = [SimpleUploadedFile(f"d{i}.pdf", documentfiles.pdf(["x"])) for i in range(2)]
    response = signed_in(user).post(UPLOAD_URL, {"file": files})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_files"
    assert "one document at a time" in response.json()["error"]["message"]
    assert not Document.objects.exists() and not stored_files(media)


def test_too_many_pages_is_refused(user, media, settings):
    settings.CHAT_DOCUMENT_MAX_PAGES = 2
    response = upload(signed_in(user), "long.pdf", documentfiles.pdf(PAGES))
    assert response.json()["error"] == {
        "code": "too_many_pages",
        "message": "long.pdf: the document has 3 pages; the limit is 2.",
    }
    assert not Document.objects.exists() and stored_files(media) == []


def test_too_large_is_refused(user, media, settings):
    settings.CHAT_DOCUMENT_MAX_BYTES = 1000
    response = upload(signed_in(user), "big.txt", b"word " * 400)
    assert response.json()["error"] == {
        "code": "too_large",
        "message": "big.txt: the file is 0.0 MB; documents are limited to 0.001 MB.",
    }
    assert not Document.objects.exists() and stored_files(media) == []


def test_document_failing_while_read_keeps_only_its_reason(
    user, media, monkeypatch, django_capture_on_commit_callbacks
):
    document = document_create(
        owner=user, document=prepare_document(name="r.pdf", data=documentfiles.pdf(PAGES))
    )

    def broken(*args, **kwargs):
        yield documents.PageText(1, "first", "text_layer")
        raise DocumentRejected("corrupt", "r.pdf: page 2 of the PDF is damaged.")

    monkeypatch.setattr(documents, "read_pages", broken)
    with django_capture_on_commit_callbacks(execute=True):
        document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert (document.status, document.error) == ("failed", "r.pdf: page 2 of the PDF is damaged.")
    assert not DocumentPage.objects.exists()
    assert stored_files(media) == []


# Upload, progress, access


@pytest.mark.django_db(transaction=True)
def test_upload_is_read_in_the_background_with_progress(user, media):
    client = signed_in(user)
    response = upload(client, "report.pdf", documentfiles.pdf(PAGES))
    assert response.status_code == 201
    data = response.json()["document"]
    assert (data["name"], data["mime"], data["page_count"]) == ("report.pdf", documents.PDF, 3)
    assert data["status"] in ("queued", "ingesting", "ready")
    deadline = time.monotonic() + 20
    while data["status"] != "ready":
        assert time.monotonic() < deadline, data
        assert data["pages_done"] <= data["page_count"]
        time.sleep(0.05)
        data = client.get(data["url"]).json()["document"]
    assert (data["pages_done"], data["error"]) == (3, "")
    assert data["tokens"] == Document.objects.get().tokens > 0


def test_someone_elses_document_is_not_found(user, other_user):
    document = ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    other = signed_in(other_user)
    assert other.get(f"/documents/{document.pk}/").status_code == 404
    assert other.get(f"/documents/{document.pk}/pages/1/").status_code == 404
    assert other.get(f"/documents/{document.pk}/pages/1/image/").status_code == 404
    assert other.post(f"/documents/{document.pk}/delete/").status_code == 404
    assert Document.objects.filter(pk=document.pk).exists()


def test_page_view_shows_text_and_picture_of_a_scanned_page(user):
    document = ingested(user, "scan.pdf", documentfiles.pdf([PAGES[0], None]))
    client = signed_in(user)
    page = client.get(f"/documents/{document.pk}/pages/2/", HTTP_ACCEPT="application/json").json()[
        "page"
    ]
    assert page["source"] == "page_image"
    assert page["image_url"] == f"/documents/{document.pk}/pages/2/image/"
    image = client.get(page["image_url"])
    assert (image.status_code, image["Content-Type"]) == (200, "image/png")
    assert image.content.startswith(b"\x89PNG")
    first = client.get(f"/documents/{document.pk}/pages/1/", HTTP_ACCEPT="application/json")
    assert first.json()["page"]["image_url"] == ""  # a text page shows its text
    html = client.get(f"/documents/{document.pk}/pages/1/").content.decode()
    assert "Revenue grew by twelve percent" in html


def test_removing_an_unsent_document_deletes_its_file(
    user, media, django_capture_on_commit_callbacks
):
    document = ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(user).post(f"/documents/{document.pk}/delete/")
    assert response.json() == {"deleted": document.pk}
    assert not Document.objects.exists() and not DocumentPage.objects.exists()
    assert stored_files(media) == []


def test_reviewer_reads_pages_only_of_documents_sent_in_a_conversation(
    user, media, django_user_model, review_seed
):
    from django.contrib.auth.models import Group

    from conversations.models import Conversation

    reviewer = django_user_model.objects.create_user(username="rev", password="x", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewer"))
    document = ingested(user, "report.pdf", documentfiles.pdf(["One", "Two"]))
    url = f"/documents/{document.pk}/pages/1/"
    assert signed_in(reviewer).get(url).status_code == 404  # still in its owner's composer
    conversation = Conversation.objects.create(owner=user, model="m")
    document.message = message_create(conversation=conversation, role="user", text="")
    document.save()
    assert signed_in(reviewer).get(url).status_code == 200
