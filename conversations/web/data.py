"""Your data: export conversations (one, a selection, or all) as JSON, as a zip with their
files, or as Markdown, streamed as they are read; import this site's export or ChatGPT's
conversations.json. Thin over exports.py and imports.py."""

import datetime

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from conversations.exports import (
    conversations_to_export,
    json_chunks,
    markdown_chunks,
    zip_chunks,
)
from conversations.ids import parse_id
from conversations.imports import import_file
from conversations.models import Upload
from conversations.modelservers import providers
from conversations.parsers.errors import ImportRejected
from conversations.selectors import conversation_list
from conversations.web.files import accepted_file
from conversations.web.responses import error_json, wants_json

# The conversations the page lists to pick from, newest first.
LISTED = 200

_FORMATS = {
    "json": ("application/json", "json", json_chunks),
    "zip": ("application/zip", "zip", zip_chunks),
    "markdown": ("text/markdown; charset=utf-8", "md", markdown_chunks),
}


@login_required
@require_GET
def data_page(request: HttpRequest) -> HttpResponse:
    conversations = list(conversation_list(user=request.user)[:LISTED])
    return render(request, "conversations/data.html", {"conversations": conversations})


@login_required
@require_GET
def export(request: HttpRequest) -> HttpResponse:
    """`?format=json|zip|markdown` and `?conversations=1,2,3` (absent: every one)."""
    kind = request.GET.get("format", "json")
    if kind not in _FORMATS:
        return error_json("invalid", "The format is json, zip or markdown.")
    raw = request.GET.get("conversations", "")
    try:
        ids = [parse_id(part) for part in raw.split(",")] if raw else None
    except ValueError:
        return error_json("invalid", "'conversations' is a comma-separated list of ids.")
    chosen = conversations_to_export(user=request.user, ids=ids)
    if ids is not None and len(chosen) != len(set(ids)):
        raise Http404("No such conversation.")  # another user's, or gone: as everywhere
    mime, suffix, chunks = _FORMATS[kind]
    response = StreamingHttpResponse(chunks(chosen), content_type=mime)
    day = datetime.date.today().isoformat()
    response["Content-Disposition"] = f'attachment; filename="mistral-chat-{day}.{suffix}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_POST
def import_view(request: HttpRequest) -> HttpResponse:
    """One file: new conversations for each it holds; the report says what was imported,
    what was skipped and why."""
    upload = accepted_file(request, "file to import", Upload.Kind.IMPORT)
    if isinstance(upload, JsonResponse):
        return upload
    data = upload.read()
    try:
        report = import_file(
            user=request.user, data=data, name=upload.name, default_model=providers.default_model()
        )
    except ImportRejected as err:
        if wants_json(request):
            return error_json(err.code, err.message)
        context = {"conversations": [], "error": err.message}
        return render(request, "conversations/data.html", context, status=400)
    result = {
        "source": report.source,
        "imported": report.imported,
        "skipped": report.skipped,
        "left_out": report.left_out,
    }
    if wants_json(request):
        return JsonResponse(result)
    conversations = list(conversation_list(user=request.user)[:LISTED])
    return render(
        request, "conversations/data.html", {"conversations": conversations, "report": result}
    )
