"""Pages and the small JSON endpoints the chat page calls. Every conversation is reached
through `access_conversation`, so another user's id is a 404 like a missing one.

Forms post the classic way and get a redirect; the chat page's script posts the same forms
with `Accept: application/json` and gets JSON (400 with field errors when invalid).
"""

from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Q
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import broadcast, generation, providers, retrieval
from .documents import DocumentRejected, check_document_upload, page_png
from .forms import ConversationSettingsForm, RenameForm, SignupForm
from .images import ImageRejected, check_image_upload
from .ingest import document_ingest_enqueue
from .models import Conversation, Document, DocumentPage, Message
from .rendering import render_markdown
from .selectors import (
    AttachmentNotFound,
    ConversationNotFound,
    DocumentNotFound,
    access_attachment,
    access_conversation,
    access_document,
    conversation_list,
    document_ids_of,
    documents_with_pages,
    message_history,
    message_window,
    reported_message_ids,
)
from .services import (
    REPORT_REASON_MAX_CHARS,
    NotReportable,
    attachment_create,
    attachment_delete,
    conversation_delete,
    conversation_rename,
    conversation_update_settings,
    document_create,
    document_delete,
    report_create,
)

# The sidebar shows this many conversations, then a "More" button for the next ones.
SIDEBAR_PAGE_SIZE = 50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("chat")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_GET
def chat(request: HttpRequest) -> HttpResponse:
    """A new chat: the empty thread; the first message creates the conversation."""
    return _chat_page(request, conversation=None)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _chat_page(request, conversation=_access(request, pk))


@login_required
@require_GET
def thread_earlier(request: HttpRequest, pk: int) -> HttpResponse:
    """The messages before `?before=<id>`, rendered as on the page, for the script to put
    above the thread; with `earlier`, whether there are more still."""
    conversation = _access(request, pk)
    try:
        before = int(request.GET["before"])
    except (KeyError, ValueError):
        return HttpResponseBadRequest("A 'before' message id is required.")
    messages, earlier = message_window(
        conversation_id=conversation.pk, before_id=before, limit=settings.CHAT_PAGE_MESSAGES
    )
    _for_the_thread(request, conversation, messages)
    html = render_to_string("conversations/_messages.html", {"messages": messages}, request=request)
    return JsonResponse({"html": html, "earlier": earlier})


def _for_the_thread(
    request: HttpRequest, conversation: Conversation | None, messages: list[Message]
) -> None:
    """What the thread's template shows of each message beyond its row."""
    reported = (
        reported_message_ids(user=request.user, conversation_id=conversation.pk)
        if conversation
        else set()
    )
    for message in messages:
        message.reported = message.pk in reported
        # Answers cut by a restart were never rendered whole; ones still streaming are
        # replaced by their live state as soon as the socket subscribes.
        if message.role == Message.Role.ASSISTANT and message.text and not message.html:
            message.html = render_markdown(message.text)
        message.meta = _answer_meta(message)


@login_required
@require_GET
def sidebar_more(request: HttpRequest) -> HttpResponse:
    """The next page of the sidebar, as list items for the script to append."""
    try:
        before = _parse_cursor(request.GET["before"])
    except (KeyError, ValueError):
        return HttpResponseBadRequest("A 'before' cursor is required.")
    conversations, cursor = _sidebar_page(request.user, before=before)
    return render(
        request,
        "conversations/_sidebar_items.html",
        {"conversations": conversations, "more_cursor": cursor},
    )


@login_required
@require_POST
def rename(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _access(request, pk)
    form = RenameForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form, conversation)
    conversation = conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    data = generation.conversation_data(conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation", "conversation": data})
    if _wants_json(request):
        return JsonResponse({"conversation": data})
    return redirect("conversation", pk=conversation.pk)


@login_required
@require_POST
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _access(request, pk)
    conversation_delete(conversation=conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation.deleted", "conversation": pk})
    if _wants_json(request):
        return JsonResponse({"deleted": pk})
    return redirect("chat")


@login_required
@require_http_methods(["GET", "POST"])
def conversation_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """The chat page shows this form in a dialog; the page of its own serves without script
    and shows the errors of a classic post."""
    conversation = _access(request, pk)
    if request.method == "GET":
        form = ConversationSettingsForm(initial=_settings_initial(conversation))
        return _settings_page(request, conversation, form)
    form = ConversationSettingsForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form, conversation)
    conversation = conversation_update_settings(conversation=conversation, **form.cleaned_data)
    data = generation.conversation_data(conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation", "conversation": data})
    if _wants_json(request):
        return JsonResponse({"conversation": data, "settings": _settings_initial(conversation)})
    return redirect("conversation", pk=conversation.pk)


@login_required
async def models_json(request: HttpRequest) -> JsonResponse:
    """The models the picker offers, from every provider, and a line for each provider that
    could not be listed; async, as listing them may wait on model servers."""
    return JsonResponse(await providers.model_catalog())


@login_required
@require_POST
def attachment_upload(request: HttpRequest) -> JsonResponse:
    """One image per request (the page sends each with its own progress bar). The answer
    is the stored attachment, or 400 with an error naming the file and the reason."""
    upload = request.FILES.get("file")
    if upload is None or len(request.FILES) != 1:
        return _upload_error("no_file", "Choose one image to upload.")
    try:
        image = check_image_upload(upload)
    except ImageRejected as err:
        return _upload_error(err.code, err.message)
    attachment = attachment_create(owner=request.user, image=image)
    return JsonResponse({"attachment": generation.attachment_data(attachment)}, status=201)


@login_required
@require_POST
def attachment_remove(request: HttpRequest, pk: int) -> JsonResponse:
    """Take an unsent image out of the composer; one already sent stays with its message."""
    try:
        attachment = access_attachment(user=request.user, attachment_id=pk)
    except AttachmentNotFound:
        raise Http404("No such image.") from None
    if attachment.message_id is not None:
        return _upload_error("already_sent", "This image was sent and stays with its message.")
    attachment_delete(attachment=attachment)
    return JsonResponse({"deleted": pk})


@login_required
@require_GET
def attachment_file(request: HttpRequest, pk: int, kind: str) -> FileResponse:
    """An image, to its owner or a staff reviewer only; files are never at a public path.
    `sent` is the copy the model got (shown in the thread), `original` the upload as it
    came, offered as a download since a browser may not show its format (HEIC)."""
    try:
        attachment = access_attachment(user=request.user, attachment_id=pk, for_review=True)
    except AttachmentNotFound:
        raise Http404("No such image.") from None
    if kind == "sent":
        field, mime, inline = attachment.sent, attachment.sent_mime, True
        name = attachment.name.rsplit(".", 1)[0] + (".png" if mime == "image/png" else ".jpg")
    elif kind == "original":
        field, mime, inline, name = attachment.original, attachment.mime, False, attachment.name
    else:
        raise Http404("No such image.")
    response = FileResponse(
        field.open("rb"), content_type=mime, as_attachment=not inline, filename=name
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_POST
def document_upload(request: HttpRequest) -> JsonResponse:
    """One document per request, checked here (type, size, pages, encryption, zip bombs)
    and read into pages in a worker thread once stored; the composer polls document_status
    for its progress. 400 names the file and the reason, and stores nothing."""
    upload = request.FILES.get("file")
    if upload is None or len(request.FILES) != 1:
        return _upload_error("no_file", "Choose one document to upload.")
    try:
        prepared = check_document_upload(upload)
    except DocumentRejected as err:
        return _upload_error(err.code, err.message)
    document = document_create(owner=request.user, document=prepared)
    transaction.on_commit(lambda: document_ingest_enqueue(document.pk))
    return JsonResponse({"document": document_data(document)}, status=201)


@login_required
@require_GET
def document_status(request: HttpRequest, pk: int) -> JsonResponse:
    """Where reading a document has got to: pages done of the total, ready, or why not."""
    return JsonResponse({"document": document_data(_access_document(request, pk))})


@login_required
@require_POST
def document_remove(request: HttpRequest, pk: int) -> JsonResponse:
    """Take an unsent document out of the composer; one already sent stays."""
    document = _access_document(request, pk)
    if document.message_id is not None:
        return _upload_error("already_sent", "This document was sent and stays with its message.")
    document_delete(document=document)
    return JsonResponse({"deleted": pk})


@login_required
@require_GET
def document_page(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A cited page: its text and how it was obtained, and its picture for a PDF page whose
    text did not come from a text layer. JSON for the chat page's dialog, else a page."""
    document = _access_document(request, pk, for_review=True)
    page = DocumentPage.objects.filter(document=document, number=number).first()
    if page is None:
        raise Http404("No such page.")
    image_url = (
        reverse("document_page_image", args=[document.pk, number])
        if document.mime == "application/pdf" and page.source != DocumentPage.Source.TEXT_LAYER
        else ""
    )
    data = {
        "document": document.pk,
        "name": document.name,
        "number": number,
        "page_count": document.page_count,
        "text": page.text,
        "source": page.source,
        "source_label": page.get_source_display(),
        "image_url": image_url,
    }
    if _wants_json(request):
        return JsonResponse({"page": data})
    return render(request, "conversations/document_page.html", {"page": data})


@login_required
@require_GET
def document_page_image(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A PDF page rendered as PNG, for the reader of a scanned page (never stored)."""
    document = _access_document(request, pk, for_review=True)
    if document.mime != "application/pdf" or not 1 <= number <= document.page_count:
        raise Http404("No such page.")
    response = HttpResponse(page_png(document, number), content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
async def document_preview(request: HttpRequest) -> JsonResponse:
    """Before a question is sent: how the documents will go (full text or retrieval), how
    many tokens the request will carry and roughly what that costs. Query: `conversation`
    (optional), `documents` (ids of ready documents in the composer), `model`."""
    try:
        conversation_id = int(request.GET["conversation"] or 0) or None
        pending = [int(x) for x in request.GET.get("documents", "").split(",") if x]
    except (KeyError, ValueError):
        return _upload_error("invalid", "'conversation' and 'documents' must be ids.")
    user = await request.auser()
    model = request.GET.get("model") or providers.default_model()
    budget = retrieval.context_budget(await retrieval.max_context_length(model))
    try:
        preview = await sync_to_async(_preview)(user, conversation_id, pending, model, budget)
    except ConversationNotFound:
        raise Http404("No such conversation.") from None
    return JsonResponse({"preview": preview})


def _preview(user, conversation_id: int | None, pending: list[int], model: str, budget: int):
    history = []
    if conversation_id is not None:
        conversation = access_conversation(user=user, conversation_id=conversation_id)
        history = message_history(conversation_id=conversation.pk)
    owned = Document.objects.filter(pk__in=pending, owner=user, message__isnull=True)
    ids = document_ids_of(history) + list(owned.values_list("pk", flat=True))
    documents = documents_with_pages(document_ids=ids)
    if not documents:
        return {"mode": "", "documents": 0}
    mode, tokens = retrieval.choose_mode(documents, budget)
    if mode == retrieval.RETRIEVAL:
        chunks = retrieval.chunks_of(documents)
        tokens = retrieval.plan_retrieval(documents, budget, "", chunks, "").tokens
    conversation_tokens = sum(retrieval.count_tokens(m.text) for m in history)
    total = tokens + conversation_tokens
    cost = retrieval.cost_estimate(model, total)
    return {
        "mode": mode,
        "documents": len(documents),
        "document_tokens": tokens,
        "tokens": total,
        "budget": budget,
        "passages": settings.CHAT_RETRIEVAL_CHUNKS if mode == retrieval.RETRIEVAL else None,
        "model": model,
        "cost_usd": f"{cost:.6f}" if cost is not None else None,
    }


def document_data(document: Document) -> dict:
    """A document as the composer sees it while it is read."""
    return {
        "id": document.pk,
        "name": document.name,
        "mime": document.mime,
        "size": document.size,
        "status": document.status,
        "page_count": document.page_count,
        "pages_done": document.pages_done,
        "tokens": document.tokens,
        "error": document.error,
        "url": reverse("document_status", args=[document.pk]),
    }


def _access_document(request: HttpRequest, pk: int, *, for_review: bool = False) -> Document:
    try:
        return access_document(user=request.user, document_id=pk, for_review=for_review)
    except DocumentNotFound:
        raise Http404("No such document.") from None


@login_required
@require_POST
def message_report(request: HttpRequest, pk: int) -> JsonResponse:
    """A thumbs-down on one of the user's answers, with an optional reason: the
    conversation then comes first in the admin's review queue. JSON only; the chat page's
    report dialog posts it."""
    reason = request.POST.get("reason", "")
    if len(reason) > REPORT_REASON_MAX_CHARS:
        too_long = f"Keep the reason under {REPORT_REASON_MAX_CHARS:,} characters."
        return JsonResponse({"errors": {"reason": [too_long]}}, status=400)
    try:
        report = report_create(user=request.user, message_id=pk, reason=reason)
    except ConversationNotFound:
        raise Http404("No such answer.") from None
    except NotReportable:
        return JsonResponse(
            {"errors": {"__all__": ["Only an answer that has finished can be reported."]}},
            status=400,
        )
    return JsonResponse({"report": {"message": pk, "reason": report.reason}}, status=201)


# Helpers


def _upload_error(code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=400)


def _access(request: HttpRequest, pk: int) -> Conversation:
    try:
        return access_conversation(user=request.user, conversation_id=pk)
    except ConversationNotFound:
        raise Http404("No such conversation.") from None


def _chat_page(request: HttpRequest, *, conversation: Conversation | None) -> HttpResponse:
    conversations, cursor = _sidebar_page(request.user, before=None)
    messages, earlier = (
        message_window(conversation_id=conversation.pk, limit=settings.CHAT_PAGE_MESSAGES)
        if conversation
        else ([], False)
    )
    _for_the_thread(request, conversation, messages)
    model = conversation.model if conversation else providers.default_model()
    initial = _settings_initial(conversation) if conversation else {"model": model}
    context = {
        "conversation": conversation,
        "messages": messages,
        "earlier": earlier,
        "conversations": conversations,
        "more_cursor": cursor,
        "model": model,
        "settings_form": ConversationSettingsForm(initial=initial),
    }
    return render(request, "conversations/chat.html", context)


def _sidebar_page(
    user, *, before: tuple[datetime, int] | None
) -> tuple[list[Conversation], str | None]:
    """One page of the sidebar, newest first, by keyset on (updated_at, id) so the
    thousandth page costs what the first does; returns the rows and the next cursor."""
    rows = conversation_list(user=user).only("id", "title", "updated_at")
    if before is not None:
        updated_at, pk = before
        rows = rows.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, id__lt=pk))
    rows = list(rows[: SIDEBAR_PAGE_SIZE + 1])
    if len(rows) <= SIDEBAR_PAGE_SIZE:
        return rows, None
    rows = rows[:SIDEBAR_PAGE_SIZE]
    return rows, _cursor(rows[-1])


def _cursor(conversation: Conversation) -> str:
    micros = (conversation.updated_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{conversation.pk}"


def _parse_cursor(value: str) -> tuple[datetime, int]:
    micros, pk = value.split("_")
    return _EPOCH + timedelta(microseconds=int(micros)), int(pk)


def _settings_initial(conversation: Conversation) -> dict:
    return {
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "temperature": conversation.temperature,
        "top_p": conversation.top_p,
        "max_tokens": conversation.max_tokens,
        "random_seed": conversation.random_seed,
        "safe_prompt": conversation.safe_prompt,
    }


def _settings_page(request, conversation, form, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "conversations/settings.html",
        {"conversation": conversation, "form": form},
        status=status,
    )


def _invalid(request: HttpRequest, form, conversation: Conversation) -> HttpResponse:
    if _wants_json(request):
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        return JsonResponse({"errors": errors}, status=400)
    if isinstance(form, ConversationSettingsForm):
        return _settings_page(request, conversation, form, status=400)
    return render(
        request,
        "conversations/rename.html",
        {"conversation": conversation, "form": form},
        status=400,
    )


def _answer_meta(message: Message) -> str:
    """The line under an ended answer; static/js/thread.js writes the same from a frame."""
    if message.role != Message.Role.ASSISTANT or message.is_active:
        return ""
    parts = [message.model] if message.model else []
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        parts.append(f"{message.prompt_tokens:,} in · {message.completion_tokens:,} out tokens")
    if message.time_to_first_token_ms is not None:
        ms = message.time_to_first_token_ms
        first = f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
        parts.append(f"first token {first}")
    return " · ".join(parts)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _publish_on_commit(user_id: int, frame: dict) -> None:
    transaction.on_commit(lambda: broadcast.user_publish_sync(user_id, frame))
