"""Share links (conversations/shares.py): made from the chat page, listed and revoked on
the user's Shared links page, read by anyone with the link, no account needed.

The shared page is the stored sanitized HTML and nothing else of the owner: no sidebar, no
ids beyond the snapshot's, the owner's name only if chosen, files only if included (and
then only through the link). It is never indexed (`X-Robots-Tag` and the robots meta) and
never cached, so a revoked link stops at once.
"""

import re

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations.ids import parse_id
from conversations.models import DocumentPage, Message, Share
from conversations.rendering import render_markdown
from conversations.shares import (
    NothingToShare,
    ShareNotFound,
    access_share,
    share_by_token,
    share_create,
    share_revoke,
    shared_attachment,
    shared_document,
    shares_of,
    snapshot,
)
from conversations.web.responses import conversation_or_404, wants_json

# A citation the renderer linked to a document's page (rendering/citations.py).
_CITATION = re.compile(r'<a class="cite" href="/documents/(\d+)/pages/(\d+)/"[^>]*>(.*?)</a>', re.S)

_PRIVATE = {
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@login_required
@require_POST
def share_new(request: HttpRequest, pk: int) -> JsonResponse:
    """A link to the conversation's branch shown, up to the posted `message` (its end when
    absent), with `show_name` and `include_files` as ticked."""
    conversation = conversation_or_404(request, pk)
    raw = request.POST.get("message", "")
    try:
        message_id = parse_id(raw) if raw else None
        share = share_create(
            conversation=conversation,
            message_id=message_id,
            show_name=request.POST.get("show_name") == "on",
            include_files=request.POST.get("include_files") == "on",
        )
    except ValueError:
        return JsonResponse({"errors": {"message": ["No such message here."]}}, status=400)
    except NothingToShare as err:
        return JsonResponse({"errors": {"message": [str(err)]}}, status=400)
    return JsonResponse({"share": share_data(request, share)}, status=201)


@login_required
@require_GET
def shares_page(request: HttpRequest) -> HttpResponse:
    """The user's links, to copy or revoke."""
    shares = shares_of(user=request.user)
    if wants_json(request):
        return JsonResponse({"shares": [share_data(request, s) for s in shares]})
    rows = [{"share": s, **share_data(request, s)} for s in shares]
    return render(request, "conversations/shares.html", {"rows": rows})


@login_required
@require_POST
def share_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        share = access_share(user=request.user, share_id=pk)
    except ShareNotFound:
        raise Http404("No such link.") from None
    share_revoke(share=share)
    if wants_json(request):
        return JsonResponse({"share": share_data(request, share)})
    return redirect("shares")


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    """The snapshot, for anyone with the link."""
    share = _live(token)
    shot = snapshot(share)
    for message in shot.messages:
        if message.role == Message.Role.ASSISTANT:
            html = message.html or render_markdown(message.text)
            message.shared_html = _citations(html, share)
        message.shared_documents = shot.documents.get(message.pk, [])
    context = {
        "share": share,
        "messages": shot.messages,
        "owner": share.conversation.owner.get_username() if share.show_name else "",
    }
    return _private(render(request, "conversations/shared.html", context))


@require_GET
def shared_image(request: HttpRequest, token: str, pk: int) -> FileResponse:
    share = _live(token)
    try:
        attachment = shared_attachment(share, pk)
    except ShareNotFound:
        raise Http404("No such image.") from None
    response = FileResponse(attachment.sent.open("rb"), content_type=attachment.sent_mime)
    response["X-Content-Type-Options"] = "nosniff"
    return _private(response)


@require_GET
def shared_page(request: HttpRequest, token: str, pk: int, number: int) -> HttpResponse:
    """A page of a shared document, as its text."""
    share = _live(token)
    try:
        document = shared_document(share, pk)
    except ShareNotFound:
        raise Http404("No such document.") from None
    page = DocumentPage.objects.filter(document=document, number=number).first()
    if page is None:
        raise Http404("No such page.")
    context = {
        "share": share,
        "name": document.name,
        "number": number,
        "page_count": document.page_count,
        "text": page.text,
    }
    return _private(render(request, "conversations/shared_page.html", context))


def share_data(request: HttpRequest, share: Share) -> dict:
    return {
        "id": share.pk,
        "url": request.build_absolute_uri(reverse("shared", args=[share.token])),
        "title": share.title or "New chat",
        "conversation": share.conversation_id,
        "messages": len(share.message_ids),
        "show_name": share.show_name,
        "include_files": share.include_files,
        "created_at": share.created_at.isoformat(),
        "revoked": share.revoked_at is not None,
        "revoke_url": reverse("share_revoke", args=[share.pk]),
    }


def _live(token: str) -> Share:
    try:
        return share_by_token(token)
    except ShareNotFound:
        raise Http404("This link does not exist or was revoked.") from None


def _citations(html: str, share: Share) -> str:
    """Citation links pointed at the link's own pages when files are included, else left
    as their text: the owner's document pages are not the viewer's."""

    def replace(match: re.Match) -> str:
        if not share.include_files:
            return match.group(3)
        url = reverse("shared_page", args=[share.token, match.group(1), match.group(2)])
        return f'<a class="cite" href="{url}">{match.group(3)}</a>'

    return _CITATION.sub(replace, html)


def _private(response: HttpResponse) -> HttpResponse:
    for header, value in _PRIVATE.items():
        response[header] = value
    return response
