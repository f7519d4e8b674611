"""Questions about documents, from the `send` frame to the exact body the fake Mistral server
gets: the full text with page markers, or retrieved passages (embeddings validated against
the spec, BM25 without them), page pictures for scans and figures, the preview before
sending, and citations that link to pages."""

import asyncio
import base64
import io
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from bench.retrieval_corpus import bench_document
from conversations.documents import ingest, ranking, retrieval
from conversations.documents.ingest import document_ingest
from conversations.documents.reading import prepare_document
from conversations.models import ApiCall, Document, DocumentPage, Message, ModelPrice
from conversations.rendering import Citations, render_markdown
from conversations.selectors import documents_with_pages
from conversations.uploads import document_create
from tests import documentfiles
from tests.fake_mistral import Reply, request_errors, split_tokens
from tests.helpers import frames_until, is_final

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    "Quarterly report. Revenue grew by twelve percent in the first quarter of the year.",
    "Page two explains that the Lyon office opened in March with forty engineers on staff.",
    "Page three lists the risks: currency exchange, supply chains and hiring in a tight market.",
]
FACT = "The access code for the north vault is 9931, changed every Monday by the guard."


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@sync_to_async
def ingested(user, name: str, data: bytes) -> Document:
    document = document_create(owner=user, document=prepare_document(name=name, data=data))
    document_ingest(document_id=document.pk)
    document.refresh_from_db()
    return document


def long_pages() -> list[str]:
    filler = (
        "This page describes routine maintenance of the warehouse lighting, the cleaning "
        "rota, parking rules and the canteen menu for the week in some detail."
    )
    pages = [f"{filler} Section {i}." for i in range(1, 61)]
    pages[36] = f"{filler} {FACT}"
    return pages


async def ask(socket, text, documents, conversation=None) -> list[dict]:
    frame = {"type": "send", "conversation": conversation, "text": text, "documents": documents}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    return await frames_until(socket, is_final)


def squashed(text: str) -> str:
    """The text with its line wraps (a PDF's text layer keeps them) as single spaces."""
    return " ".join(text.split())


def answer_of(frames: list[dict]) -> dict:
    return [f for f in frames if is_final(f)][-1]["message"]


def chat_bodies(fake) -> list[dict]:
    return [r.json for r in fake.requests if r.path == "/v1/chat/completions" and r.json["stream"]]


def full_text(name: str, pages: list[str]) -> str:
    blocks = [retrieval.INSTRUCTIONS.format(name=name)]
    blocks += [f"{retrieval.marker(name, n)}\n{text}" for n, text in enumerate(pages, 1)]
    return "\n\n".join(blocks)


# Full text


async def test_small_document_goes_whole_with_page_markers(user, open_socket, fake_mistral):
    document = await ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    socket = await open_socket(user)
    frames = await ask(socket, "When did the Lyon office open?", [document.pk])

    [body] = chat_bodies(fake_mistral)
    assert body["model"] == "mistral-small-latest"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": full_text("report.pdf", PAGES)},
                {"type": "text", "text": "When did the Lyon office open?"},
            ],
        }
    ]
    question = next(f["message"] for f in frames if f["type"] == "message")
    assert question["documents"] == [{"id": document.pk, "name": "report.pdf", "pages": 3}]
    answer = answer_of(frames)
    tokens = await sync_to_async(retrieval.full_tokens)([await _with_pages(document)])
    assert answer["notice"] == f"Sent the full text of 1 document, ~{tokens:,} tokens."
    assert answer["status"] == "complete"
    assert answer["prompt_tokens"] > 0  # the real usage, recorded after


async def test_later_question_still_carries_earlier_documents(user, open_socket, fake_mistral):
    report = await ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    notes = await ingested(user, "notes.md", b"# Notes\n\nThe launch is on Tuesday.")
    socket = await open_socket(user)
    frames = await ask(socket, "Summarise.", [report.pk])
    conversation = answer_of(frames)["conversation"]
    await ask(socket, "And the notes?", [notes.pk], conversation)
    await ask(socket, "Which page mentions Lyon?", [], conversation)

    last = chat_bodies(fake_mistral)[-1]
    content = last["messages"][-1]["content"]
    assert content[-1] == {"type": "text", "text": "Which page mentions Lyon?"}
    assert '[Document "report.pdf", page 2]\n' + PAGES[1] in content[0]["text"]
    assert (
        '[Document "notes.md", page 1]\n# Notes\n\nThe launch is on Tuesday.' in content[0]["text"]
    )
    # Earlier turns stay plain text: the documents go once, with the newest question.
    assert [m["content"] for m in last["messages"][:-1] if m["role"] == "user"] == [
        "Summarise.",
        "And the notes?",
    ]


# Page pictures


async def test_scanned_page_without_ocr_goes_as_a_picture(
    user, open_socket, fake_mistral, settings
):
    settings.MISTRAL_API_KEY = ""
    document = await ingested(user, "scan.pdf", documentfiles.pdf([PAGES[0], None]))
    settings.MISTRAL_API_KEY = "test-key"
    socket = await open_socket(user)
    await ask(socket, "What is on the scan?", [document.pk])

    [request] = [r for r in fake_mistral.requests if r.path == "/v1/chat/completions"]
    content = request.json["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "text", "image_url", "text"]
    assert (
        '[Document "scan.pdf", page 2]\n(no text: this page is sent as a picture)'
        in content[0]["text"]
    )
    assert content[1] == {"type": "text", "text": '[Document "scan.pdf", page 2] (picture)'}
    assert content[2]["image_url"].startswith("data:image/png;base64,")
    # The fake decoded it: a PNG page within the vision models' 1540 px.
    [image] = request.images
    assert (image.format, max(image.size)) == ("PNG", 1540)


async def test_question_about_a_chart_sends_that_page_as_a_picture(user, open_socket, fake_mistral):
    document = await ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    socket = await open_socket(user)
    await ask(socket, "What does the chart on page 2 show?", [document.pk])

    [body] = chat_bodies(fake_mistral)
    content = body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "text", "image_url", "text"]
    assert PAGES[1] in content[0]["text"]  # its text too
    assert content[1]["text"] == '[Document "report.pdf", page 2] (picture)'
    header, encoded = content[2]["image_url"].split(",", 1)
    assert header == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as page:
        assert page.height == 1540 and page.width < page.height  # an A4 page, upright


# Retrieval


async def test_long_document_sends_retrieved_passages_ranked_by_embeddings(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001  # 262 tokens: the 60 pages do not fit
    settings.CHAT_RETRIEVAL_CHUNKS = 2
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])

    embeddings = [r for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    assert embeddings and all(r.json["model"] == "mistral-embed" for r in embeddings)
    assert all(set(r.json) == {"model", "input"} for r in embeddings)  # spec-valid, no extras
    question = ["What is the access code for the north vault?"]
    assert [r.json["input"] for r in embeddings].count(question) == 1
    [body] = chat_bodies(fake_mistral)
    text = body["messages"][0]["content"][0]["text"]
    assert '[Document "manual.pdf", page 37]\n' in text and FACT in squashed(text)
    assert text.count("[Document ") == 2  # two passages, not sixty pages
    notice = answer_of(frames)["notice"]
    assert notice.startswith("1 document too long to send whole: sent the 2 most relevant")
    assert "(BM25 + mistral-embed)" in notice
    calls = [c async for c in ApiCall.objects.filter(kind="embeddings")]
    assert calls and all(c.status == "complete" and c.prompt_tokens > 0 for c in calls)


async def test_retrieval_falls_back_to_bm25_when_embeddings_fail(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    settings.CHAT_RETRIEVAL_CHUNKS = 1
    fake_mistral.embeddings_error = Reply.server_error(503)
    settings.MISTRAL_MAX_RETRIES = 0
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])

    [body] = chat_bodies(fake_mistral)
    text = body["messages"][0]["content"][0]["text"]
    assert '[Document "manual.pdf", page 37]\n' in text and FACT in squashed(text)
    assert "(BM25)" in answer_of(frames)["notice"]


def test_bm25_finds_the_page_with_the_planted_fact():
    ranked = ranking.bm25_rank(
        [unsaved("manual.pdf", long_pages())], "What is the access code of the north vault?"
    )
    assert ranked[0].page == 37
    assert FACT in squashed(ranked[0].text)


def unsaved(name: str, pages: list[str], pk: int = 1) -> Document:
    """A document as documents_with_pages returns it, with no row or file behind it."""
    document = Document(pk=pk, name=name, mime="application/pdf")
    document.page_list = [DocumentPage(number=n, text=t) for n, t in enumerate(pages, 1)]
    return document


@pytest.mark.django_db
def test_mode_is_full_at_the_budget_and_retrieval_one_token_over(user, media):
    document = document_create(
        owner=user, document=prepare_document(name="report.pdf", data=documentfiles.pdf(PAGES))
    )
    document_ingest(document_id=document.pk)
    [loaded] = documents_with_pages(document_ids=[document.pk])
    tokens = retrieval.full_tokens([loaded])
    assert retrieval.choose_mode([loaded], tokens) == (retrieval.FULL, tokens)
    assert retrieval.choose_mode([loaded], tokens - 1) == (retrieval.RETRIEVAL, tokens)


# Sending, refused


async def test_document_still_being_read_cannot_be_sent(user, open_socket, fake_mistral):
    document = await sync_to_async(document_create)(
        owner=user, document=prepare_document(name="r.pdf", data=documentfiles.pdf(PAGES))
    )
    socket = await open_socket(user)
    frame = {"type": "send", "conversation": None, "text": "Hi", "documents": [document.pk]}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    error = orjson.loads(await socket.receive_from())
    assert error == {
        "type": "error",
        "code": "document_not_ready",
        "message": "r.pdf: still being read; send when its progress bar is full.",
    }
    assert not await Message.objects.aexists()
    assert (await Document.objects.aget()).message_id is None
    assert fake_mistral.requests == []


async def test_someone_elses_document_cannot_be_sent(user, other_user, open_socket, fake_mistral):
    document = await ingested(other_user, "report.pdf", documentfiles.pdf(PAGES))
    socket = await open_socket(user)
    frame = {"type": "send", "conversation": None, "text": "Hi", "documents": [document.pk]}
    await socket.send_to(text_data=orjson.dumps(frame).decode())
    error = orjson.loads(await socket.receive_from())
    assert error["code"] == "invalid_document"
    assert not await Message.objects.aexists()


# Preview and citations


async def test_preview_says_mode_tokens_and_cost_before_sending(user, async_client, fake_mistral):
    document = await ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    await ModelPrice.objects.aupdate_or_create(
        model="mistral-small",
        defaults={"input_usd_per_million": Decimal("0.2"), "output_usd_per_million": 0},
    )
    await async_client.aforce_login(user)
    url = f"/documents/preview/?conversation=&documents={document.pk}&model=mistral-small-latest"
    preview = (await async_client.get(url)).json()["preview"]
    tokens = await sync_to_async(retrieval.full_tokens)([await _with_pages(document)])
    assert preview == {
        "mode": "full",
        "documents": 1,
        "document_tokens": tokens,
        "tokens": tokens,
        "budget": 131072,  # half of mistral-small-latest's 262,144
        "passages": None,
        "model": "mistral-small-latest",
        "cost_usd": f"{tokens * 0.2 / 1_000_000:.6f}",  # $0.20 per million input tokens
    }


async def test_preview_for_a_model_no_server_offers_is_refused(user, async_client, fake_mistral):
    await async_client.aforce_login(user)
    response = await async_client.get("/documents/preview/?conversation=&model=mistral-huge")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_model"


async def test_citations_in_the_answer_link_to_their_pages(user, open_socket, fake_mistral):
    document = await ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    fake_mistral.enqueue(
        Reply.tokens(split_tokens("It opened in March [report.pdf, p. 2]; see `[p. 2]`."))
    )
    socket = await open_socket(user)
    frames = await ask(socket, "When did Lyon open?", [document.pk])

    html = answer_of(frames)["html"]
    url = f"/documents/{document.pk}/pages/2/"
    assert (
        f'<a class="cite" href="{url}" data-document="{document.pk}" data-page="2" '
        f'title="report.pdf, page 2" target="_blank" rel="noopener noreferrer nofollow">'
        "[report.pdf, p. 2]</a>"
    ) in html
    assert "<code>[p. 2]</code>" in html  # code is left alone
    stored = await Message.objects.aget(pk=answer_of(frames)["id"])
    assert stored.html == html


def test_citation_forms_and_unknown_pages():
    citations = Citations(
        ((4, "old.pdf", 9), (7, "report.pdf", 3)), lambda d, p: f"/documents/{d}/pages/{p}/"
    )
    linked = render_markdown("A (page 2), B [old.pdf, p. 8], C [p. 30].", citations)
    assert 'href="/documents/7/pages/2/"' in linked  # the newest with a page 2
    assert 'href="/documents/4/pages/8/"' in linked  # by name
    assert "C [p. 30]." in linked and "pages/30" not in linked  # no such page: left as text
    quoted = render_markdown('["report.pdf", p. 1]', citations)
    assert 'href="/documents/7/pages/1/"' in quoted


def test_citations_are_not_linked_inside_code_or_links():
    citations = Citations(((7, "report.pdf", 3),), lambda d, p: f"/documents/{d}/pages/{p}/")
    html = render_markdown(
        "`[p. 1]` and [see [p. 2]](https://example.com)\n\n```\n[p. 3]\n```", citations
    )
    assert "/documents/7/" not in html


def test_a_citation_split_by_a_line_break_is_linked_and_its_words_stay_text():
    citations = Citations(((7, "R&D report.pdf", 3),), lambda d, p: f"/documents/{d}/pages/{p}/")
    html = render_markdown("It opened [R&D report.pdf,\np. 2] <b>then</b>.", citations)
    assert 'href="/documents/7/pages/2/"' in html
    assert 'title="R&amp;D report.pdf, page 2"' in html
    assert "<b>" not in html and "&lt;b&gt;then" in html


@sync_to_async
def _with_pages(document: Document) -> Document:
    return documents_with_pages(document_ids=[document.pk])[0]


def test_fake_server_holds_ocr_and_embeddings_bodies_to_the_spec():
    document = {"type": "document_url", "document_url": "data:application/pdf;base64,JVBERi0="}
    assert request_errors("ocr", {"model": "mistral-ocr-latest", "document": document}) == []
    [extra] = request_errors(
        "ocr", {"model": "mistral-ocr-latest", "document": document, "dpi": 300}
    )
    assert (extra["type"], extra["loc"]) == ("extra_forbidden", ["body", "dpi"])
    assert request_errors("embeddings", {"model": "mistral-embed", "input": ["a", "b"]}) == []
    [missing] = request_errors("embeddings", {"model": "mistral-embed"})
    assert (missing["type"], missing["loc"]) == ("missing", ["body", "input"])


async def test_a_continued_answer_keeps_its_citations_linked(user, open_socket, fake_mistral):
    document = await ingested(user, "report.pdf", documentfiles.pdf(PAGES))
    fake_mistral.enqueue(
        Reply.tokens(split_tokens("It opened in March [report.pdf, p. 2]."), finish_reason="length")
    )
    socket = await open_socket(user)
    cut = answer_of(await ask(socket, "When did Lyon open?", [document.pk]))
    fake_mistral.enqueue(Reply.tokens(split_tokens(" It closed in May [report.pdf, p. 3].")))
    await socket.send_to(
        text_data=orjson.dumps({"type": "continue", "message": cut["id"]}).decode()
    )
    done = answer_of(await frames_until(socket, is_final))

    assert done["text"].startswith("It opened in March [report.pdf, p. 2].")
    for page in (2, 3):
        assert f'href="/documents/{document.pk}/pages/{page}/"' in done["html"]
    # The request carried the document again, and ended with the answer as its prefix.
    body = chat_bodies(fake_mistral)[-1]
    assert body["messages"][-1]["prefix"] is True
    assert "report.pdf" in str(body["messages"][-2]["content"])


async def test_embeddings_failure_is_remembered_instead_of_paid_on_every_question(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    settings.MISTRAL_MAX_RETRIES = 0
    fake_mistral.embeddings_error = Reply.invalid_model("mistral-embed")
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])
    conversation = answer_of(frames)["conversation"]
    frames = await ask(socket, "And who changes it?", [], conversation)

    embeddings = [r for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    assert len(embeddings) == 1  # the first question's; the second asked nothing
    assert "(BM25)" in answer_of(frames)["notice"]
    failed = [c async for c in ApiCall.objects.filter(kind="embeddings")]
    assert [c.status for c in failed] == ["failed"]


async def test_embeddings_are_tried_again_once_the_failure_is_old(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    settings.MISTRAL_MAX_RETRIES = 0
    settings.CHAT_EMBEDDINGS_RETRY_SECONDS = 0
    fake_mistral.embeddings_error = Reply.invalid_model("mistral-embed")
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])
    fake_mistral.embeddings_error = None
    frames = await ask(socket, "Who changes it?", [], answer_of(frames)["conversation"])

    assert "(BM25 + mistral-embed)" in answer_of(frames)["notice"]


async def test_embeddings_setting_off_ranks_by_bm25_with_a_key(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    settings.CHAT_RETRIEVAL_EMBEDDINGS = False
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])

    assert not [r for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    [body] = chat_bodies(fake_mistral)
    assert FACT in squashed(body["messages"][0]["content"][0]["text"])
    assert "(BM25)" in answer_of(frames)["notice"]


async def test_long_document_is_embedded_when_read_so_its_first_question_embeds_only_itself(
    user, open_socket, fake_mistral, settings, monkeypatch
):
    monkeypatch.setattr(ingest, "EMBED_AT_INGESTION_TOKENS", 0)  # the 60 pages count as long
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    read = [r for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    assert sum(len(r.json["input"]) for r in read) == 60  # every passage, once
    assert await ApiCall.objects.filter(kind="embeddings", status="complete").acount() == len(read)
    ranking.process_state_reset()  # as another process: the vectors come from the disk
    fake_mistral.requests.clear()
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])

    asked = [r.json["input"] for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    assert asked == [["What is the access code for the north vault?"]]
    assert "(BM25 + mistral-embed)" in answer_of(frames)["notice"]


async def test_retrieval_note_names_the_pages_its_passages_came_from(
    user, open_socket, fake_mistral, settings
):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    settings.CHAT_RETRIEVAL_EMBEDDINGS = False
    settings.CHAT_RETRIEVAL_CHUNKS = 1
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    socket = await open_socket(user)
    frames = await ask(socket, "What is the access code for the north vault?", [document.pk])

    notice = answer_of(frames)["notice"]
    assert notice.startswith("1 document too long to send whole: sent the 1 most relevant")
    assert notice.endswith("from p. 37 of manual.pdf.")


@pytest.mark.django_db
def test_deleting_a_document_removes_its_retrieval_files(
    user, media, django_capture_on_commit_callbacks
):
    document = document_create(
        owner=user, document=prepare_document(name="m.pdf", data=documentfiles.pdf(PAGES))
    )
    document_ingest(document_id=document.pk)
    document.refresh_from_db()
    index = media / f"{document.file.name}.passages.json"
    assert index.exists()
    with django_capture_on_commit_callbacks(execute=True):
        document.delete()
    assert not index.exists()


async def test_a_long_document_is_embedded_in_calls_within_the_api_limits(
    user, fake_mistral, monkeypatch
):
    monkeypatch.setattr(ingest, "EMBED_AT_INGESTION_TOKENS", 0)
    text = "\n\n".join(bench_document("big.md", 80, 430, seed=5).pages)  # ~35,000 words
    document = await ingested(user, "big.md", text.encode())

    calls = [r for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    assert len(calls) > 2  # the fake server refuses a call over 16,384 tokens
    assert all(len(r.json["input"]) <= 128 for r in calls)
    assert not await ApiCall.objects.filter(kind="embeddings", status="failed").aexists()
    stored = await sync_to_async(lambda: documents_with_pages(document_ids=[document.pk]))()
    passages = await sync_to_async(ranking.passages_of)(stored[0])
    assert sum(len(r.json["input"]) for r in calls) == len(passages)


async def test_two_questions_at_once_embed_a_document_once(user, fake_mistral, settings):
    settings.CHAT_DOCUMENT_CONTEXT_SHARE = 0.001
    document = await ingested(user, "manual.pdf", documentfiles.pdf(long_pages()))
    [loaded] = await sync_to_async(lambda: documents_with_pages(document_ids=[document.pk]))()

    await asyncio.gather(
        *(
            retrieval.documents_plan(
                documents=[loaded], question=q, budget=262, user_id=user.pk, conversation_id=None
            )
            for q in ("Where is the vault?", "Who is the guard?")
        )
    )
    embedded = [r.json["input"] for r in fake_mistral.requests if r.path == "/v1/embeddings"]
    assert sum(len(inputs) for inputs in embedded) == 60 + 2  # the pages once, each question
