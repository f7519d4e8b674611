"""What every view answers alike: a 404 for what the user may not see, JSON errors for the
page's scripts, and whether a request wants JSON."""

from django.http import Http404, HttpRequest, JsonResponse

from conversations.limits import LimitReached
from conversations.models import Conversation, Document
from conversations.selectors import (
    ConversationNotFound,
    DocumentNotFound,
    access_conversation,
    access_document,
)


def conversation_or_404(request: HttpRequest, pk: int) -> Conversation:
    try:
        return access_conversation(user=request.user, conversation_id=pk)
    except ConversationNotFound:
        raise Http404("No such conversation.") from None


def document_or_404(request: HttpRequest, pk: int, *, for_review: bool = False) -> Document:
    try:
        return access_document(user=request.user, document_id=pk, for_review=for_review)
    except DocumentNotFound:
        raise Http404("No such document.") from None


def error_json(code: str, message: str) -> JsonResponse:
    """400 with a stable code and a sentence for people (uploads, the preview)."""
    return JsonResponse({"error": {"code": code, "message": message}}, status=400)


def limit_json(err: LimitReached) -> JsonResponse:
    """429 for a user limit (conversations/limits.py): the page shows the message, which
    says when to try again; Retry-After says it to other clients."""
    response = JsonResponse({"error": {"code": err.code, "message": err.message}}, status=429)
    if err.retry_after is not None:
        response["Retry-After"] = str(err.retry_after)
    return response


def wants_json(request: HttpRequest) -> bool:
    """The chat page's script posts the same forms with `Accept: application/json`."""
    return "application/json" in request.headers.get("Accept", "")
