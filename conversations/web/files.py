"""Images and documents: uploads from the composer, their removal before sending, and the
files and pages they are read back as. Files are never at a public path: every one is
reached through its owner (or, for reviewers, `for_review`)."""

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations.documents import retrieval
from conversations.documents.jobs import document_ingest_enqueue
from conversations.documents.preview import request_preview
from conversations.documents.reading import DocumentRejected, check_document_upload, page_png
from conversations.ids import parse_id, parse_ids
from conversations.images import ImageRejected, check_image_upload
from conversations.limits import LimitReached, check_upload
from conversations.live.frames import attachment_data, document_data
from conversations.models import DocumentPage, Upload
from conversations.modelservers import providers
from conversations.rendering import render_markdown
from conversations.selectors import AttachmentNotFound, ConversationNotFound, access_attachment
from conversations.uploads import (
    attachment_create,
    attachment_delete,
    document_create,
    document_delete,
    upload_record,
)
from conversations.web.responses import document_or_404, error_json, limit_json, wants_json


def _one_file(request: HttpRequest, what: str) -> UploadedFile | JsonResponse:
    """The one `file` of an upload, or the 400 to answer. Several files in one request are
    refused, naming the limit: reading only one of them (`FILES.get` gives the last) lost
    the others without a word."""
    files = [f for name in request.FILES for f in request.FILES.getlist(name)]
    if len(files) > 1:
        return error_json(
            "too_many_files",
            f"Upload one {what} at a time: this request has {len(files)} files.",
        )
    if not files or "file" not in request.FILES:
        return error_json("no_file", f"Choose one {what} to upload.")
    return files[0]


def accepted_file(request: HttpRequest, what: str, kind: str) -> UploadedFile | JsonResponse:
    """The one file of an upload, counted against the user's daily uploads (before it is
    read, so refused and removed files count too), or the 400 or 429 to answer."""
    upload = _one_file(request, what)
    if isinstance(upload, JsonResponse):
        return upload
    try:
        check_upload(user=request.user, size=upload.size)
    except LimitReached as err:
        return limit_json(err)
    upload_record(user=request.user, kind=kind, size=upload.size)
    return upload


@login_required
@require_POST
def attachment_upload(request: HttpRequest) -> JsonResponse:
    """One image per request (the page sends each with its own progress bar). The answer
    is the stored attachment, or 400 with an error naming the file and the reason, or 429
    when the user's daily uploads are used up (checked before the file is read)."""
    upload = accepted_file(request, "image", Upload.Kind.IMAGE)
    if isinstance(upload, JsonResponse):
        return upload
    try:
        image = check_image_upload(upload)
    except ImageRejected as err:
        return error_json(err.code, err.message)
    attachment = attachment_create(owner=request.user, image=image)
    return JsonResponse({"attachment": attachment_data(attachment)}, status=201)


@login_required
@require_POST
def attachment_remove(request: HttpRequest, pk: int) -> JsonResponse:
    """Take an unsent image out of the composer; one already sent stays with its message."""
    try:
        attachment = access_attachment(user=request.user, attachment_id=pk)
    except AttachmentNotFound:
        raise Http404("No such image.") from None
    if attachment.message_id is not None:
        return error_json("already_sent", "This image was sent and stays with its message.")
    attachment_delete(attachment=attachment)
    return JsonResponse({"deleted": pk})


@login_required
@require_GET
def attachment_file(request: HttpRequest, pk: int, kind: str) -> FileResponse:
    """An image, to its owner or a staff reviewer only. `sent` is the copy the model got
    (shown in the thread), `original` the upload as it came, offered as a download since a
    browser may not show its format (HEIC)."""
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
    """One document per request, checked while the request waits (size here; type, pages,
    encryption, zip bombs in the sandbox, conversations/parsing.py) and read into pages by
    the job worker once stored; the composer polls document_status
    for its progress. 400 names the file and the reason, and stores nothing; 429 when the
    user's daily uploads are used up (checked before the file is read)."""
    upload = accepted_file(request, "document", Upload.Kind.DOCUMENT)
    if isinstance(upload, JsonResponse):
        return upload
    try:
        prepared = check_document_upload(upload)
    except DocumentRejected as err:
        return error_json(err.code, err.message)
    document = document_create(owner=request.user, document=prepared)
    transaction.on_commit(lambda: document_ingest_enqueue(document.pk))
    return JsonResponse({"document": document_data(document)}, status=201)


@login_required
@require_GET
def document_status(request: HttpRequest, pk: int) -> JsonResponse:
    """Where reading a document has got to: pages done of the total, ready, or why not."""
    return JsonResponse({"document": document_data(document_or_404(request, pk))})


@login_required
@require_POST
def document_remove(request: HttpRequest, pk: int) -> JsonResponse:
    """Take an unsent document out of the composer; one already sent stays."""
    document = document_or_404(request, pk)
    if document.message_id is not None:
        return error_json("already_sent", "This document was sent and stays with its message.")
    document_delete(document=document)
    return JsonResponse({"deleted": pk})


@login_required
@require_GET
def document_page(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A cited page: its text and how it was obtained, and its picture for a PDF page whose
    text did not come from a text layer. JSON for the chat page's dialog, else a page."""
    document = document_or_404(request, pk, for_review=True)
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
        # OCR writes markdown (headings, tables): shown formatted, not as raw marks.
        "html": render_markdown(page.text) if page.source == DocumentPage.Source.OCR else "",
        "source": page.source,
        "source_label": page.get_source_display(),
        "image_url": image_url,
    }
    if wants_json(request):
        return JsonResponse({"page": data})
    return render(request, "conversations/document_page.html", {"page": data})


@login_required
@require_GET
def document_page_image(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A PDF page rendered as PNG, for the reader of a scanned page (never stored); 400
    naming the limit when the page is past the sandbox's."""
    document = document_or_404(request, pk, for_review=True)
    if document.mime != "application/pdf" or not 1 <= number <= document.page_count:
        raise Http404("No such page.")
    try:
        picture = page_png(document, number)
    except DocumentRejected as err:  # the page is past the sandbox's limits, or damaged
        return error_json(err.code, err.message)
    response = HttpResponse(picture, content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
async def document_preview(request: HttpRequest) -> JsonResponse:
    """Before a question is sent: how the documents will go, how many tokens the request
    will carry and roughly what that costs (documents/preview.py). Query: `conversation`
    (optional), `documents` (ids of ready documents in the composer), `model`; async, as
    the model's context window may have to be asked of its server."""
    try:
        conversation = request.GET["conversation"]
        conversation_id = parse_id(conversation) if conversation else None
        pending = parse_ids(request.GET.get("documents", ""))
    except (KeyError, ValueError):
        return error_json("invalid", "'conversation' and 'documents' must be ids.")
    user = await request.auser()
    model = request.GET.get("model") or providers.default_model()
    if not await providers.model_offered(model):
        return error_json("unknown_model", "No model server of this site offers this model.")
    budget = retrieval.context_budget(await retrieval.max_context_length(model))
    try:
        preview = await sync_to_async(request_preview)(
            user=user,
            conversation_id=conversation_id,
            document_ids=pending,
            model=model,
            budget=budget,
        )
    except ConversationNotFound:
        raise Http404("No such conversation.") from None
    return JsonResponse({"preview": preview})
