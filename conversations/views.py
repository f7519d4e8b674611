"""Pages and the small JSON endpoints the chat page calls. Every conversation is reached
through `access_conversation`, so another user's id is a 404 like a missing one.

Forms post the classic way and get a redirect; the chat page's script posts the same forms
with `Accept: application/json` and gets JSON (400 with field errors when invalid).
"""

from datetime import UTC, datetime, timedelta

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
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import broadcast, generation
from .forms import ConversationSettingsForm, RenameForm, SignupForm
from .images import ImageRejected, check_image_upload
from .models import Conversation, Message
from .rendering import render_markdown
from .selectors import (
    AttachmentNotFound,
    ConversationNotFound,
    access_attachment,
    access_conversation,
    conversation_list,
    message_history,
)
from .services import (
    attachment_create,
    attachment_delete,
    conversation_delete,
    conversation_rename,
    conversation_update_settings,
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
    """The models the picker offers; async, as listing them may wait on the model server."""
    return JsonResponse({"models": await generation.model_catalog()})


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
    messages = message_history(conversation_id=conversation.pk) if conversation else []
    for message in messages:
        # Answers cut by a restart were never rendered whole; ones still streaming are
        # replaced by their live state as soon as the socket subscribes.
        if message.role == Message.Role.ASSISTANT and message.text and not message.html:
            message.html = render_markdown(message.text)
        message.meta = _answer_meta(message)
    model = conversation.model if conversation else settings.MISTRAL_MODEL
    initial = _settings_initial(conversation) if conversation else {"model": model}
    context = {
        "conversation": conversation,
        "messages": messages,
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
