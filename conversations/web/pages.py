"""The chat page and what it posts: the thread and its earlier messages, the sidebar and its
next pages, renaming, deleting (one, several or all), pinning, archiving and the archived
list, search, a conversation's settings, the model list and reports.
Every conversation is reached through `access_conversation`, so another user's id is a 404
like a missing one.

Forms post the classic way and get a redirect; the chat page's script posts the same forms
with `Accept: application/json` and gets JSON (400 with field errors when invalid).

Over 400 lines: these are the views of the one chat page, each thin; the pages of their own
(files, tools, shares, export and import, accounts) are in the modules beside it.
"""

import json
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations.branches import NotBranchable, branch_switch, conversation_fork
from conversations.ids import parse_id
from conversations.live import broadcast
from conversations.live.frames import (
    answer_meta,
    conversation_data,
    tool_calls_data,
    totals_text,
)
from conversations.models import Conversation, Message
from conversations.modelservers import model_ids, providers
from conversations.rendering import render_markdown
from conversations.search import conversation_search
from conversations.selectors import (
    ConversationNotFound,
    ShownPath,
    access_saved_schema,
    conversation_page,
    conversations_pinned,
    message_window,
    reported_message_ids,
    saved_schemas,
    shown_path,
    with_tool_calls,
)
from conversations.services import (
    REPORT_REASON_MAX_CHARS,
    NotReportable,
    TooManySchemas,
    conversation_archive,
    conversation_delete,
    conversation_pin,
    conversation_rename,
    conversation_update_settings,
    conversations_delete,
    report_create,
    schema_delete,
    schema_save,
)
from conversations.usage import answer_totals
from conversations.web.forms import ConversationSettingsForm, RenameForm
from conversations.web.responses import conversation_or_404, wants_json

# The sidebar shows this many conversations, then a "More" button for the next ones.
SIDEBAR_PAGE_SIZE = 50
# The most conversations deleted by id in one request (the sidebar ticks loaded rows only):
# below every database's limit of bound parameters. `all=1` has no limit.
BULK_DELETE_MAX = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@login_required
@require_GET
def chat(request: HttpRequest) -> HttpResponse:
    """A new chat: the empty thread; the first message creates the conversation."""
    return _chat_page(request, conversation=None)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _chat_page(request, conversation=conversation_or_404(request, pk))


@login_required
@require_GET
def thread_earlier(request: HttpRequest, pk: int) -> HttpResponse:
    """The messages before `?before=<id>`, rendered as on the page, for the script to put
    above the thread; with `earlier`, whether there are more still."""
    conversation = conversation_or_404(request, pk)
    try:
        before = parse_id(request.GET["before"])
    except (KeyError, ValueError):
        return HttpResponseBadRequest("A 'before' message id is required.")
    messages, earlier = message_window(
        path=shown_path(conversation), before_id=before, limit=settings.CHAT_PAGE_MESSAGES
    )
    _for_the_thread(request, conversation, messages)
    html = render_to_string("conversations/_messages.html", {"messages": messages}, request=request)
    return JsonResponse({"html": html, "earlier": earlier})


@login_required
@require_GET
def thread(request: HttpRequest, pk: int) -> JsonResponse:
    """The end of the branch the conversation shows, rendered as on the page: what a tab
    puts in its thread when another tab switched branches."""
    conversation = conversation_or_404(request, pk)
    return JsonResponse(_thread_json(request, conversation, shown_path(conversation)))


@login_required
@require_POST
def branch(request: HttpRequest, pk: int) -> JsonResponse:
    """Show the branch through the posted `message` (a sibling picked with ‹ ›) in every
    tab: this tab gets the thread in the response, the others a `branch` frame."""
    conversation = conversation_or_404(request, pk)
    try:
        message_id = parse_id(request.POST["message"])
        path = branch_switch(conversation=conversation, message_id=message_id)
    except (KeyError, ValueError, NotBranchable):
        return JsonResponse({"errors": {"message": ["No such message here."]}}, status=400)
    _publish_on_commit(
        request.user.pk, {"type": "branch", "conversation": conversation.pk, "leaf": path.leaf}
    )
    return JsonResponse(_thread_json(request, conversation, path))


@login_required
@require_POST
def fork(request: HttpRequest, pk: int) -> JsonResponse:
    """A new conversation from the posted `message` up (services in branches.py); the
    response names it and where to go, with the draft a question forked from leaves."""
    conversation = conversation_or_404(request, pk)
    try:
        message_id = parse_id(request.POST["message"])
        forked = conversation_fork(conversation=conversation, message_id=message_id)
    except (KeyError, ValueError):
        return JsonResponse({"errors": {"message": ["No such message here."]}}, status=400)
    except NotBranchable as err:
        return JsonResponse({"errors": {"message": [err.message]}}, status=400)
    data = conversation_data(forked.conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation", "conversation": data})
    url = reverse("conversation", args=[forked.conversation.pk])
    return JsonResponse({"conversation": data, "url": url, "draft": forked.draft}, status=201)


def _thread_json(request: HttpRequest, conversation: Conversation, path: ShownPath) -> dict:
    messages, earlier = message_window(path=path, limit=settings.CHAT_PAGE_MESSAGES)
    _for_the_thread(request, conversation, messages)
    html = render_to_string("conversations/_messages.html", {"messages": messages}, request=request)
    return {"html": html, "earlier": earlier, "leaf": path.leaf}


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
    conversation = conversation_or_404(request, pk)
    form = RenameForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form, conversation)
    conversation = conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    data = conversation_data(conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation", "conversation": data})
    if wants_json(request):
        return JsonResponse({"conversation": data})
    return redirect("conversation", pk=conversation.pk)


@login_required
@require_POST
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = conversation_or_404(request, pk)
    conversation_delete(conversation=conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation.deleted", "conversation": pk})
    if wants_json(request):
        return JsonResponse({"deleted": pk})
    return redirect("chat")


@login_required
@require_POST
def delete_many(request: HttpRequest) -> HttpResponse:
    """Delete the posted conversations (`conversation`, repeated) or, with `all=1`, every
    one of the user's; ids that are not the user's are ignored. Every tab is told with one
    `conversations.deleted` frame."""
    if request.POST.get("all") == "1":
        ids = None
    else:
        try:
            ids = [parse_id(value) for value in request.POST.getlist("conversation")]
        except ValueError:
            return JsonResponse({"errors": {"conversation": ["Not a conversation."]}}, status=400)
        if not ids or len(ids) > BULK_DELETE_MAX:
            message = f"Choose from 1 to {BULK_DELETE_MAX:,} conversations, or all of them."
            return JsonResponse({"errors": {"conversation": [message]}}, status=400)
    deleted = conversations_delete(user=request.user, conversation_ids=ids)
    if deleted:
        _publish_on_commit(
            request.user.pk, {"type": "conversations.deleted", "conversations": deleted}
        )
    if wants_json(request):
        return JsonResponse({"deleted": deleted})
    return redirect("chat")


@login_required
@require_POST
def pin(request: HttpRequest, pk: int) -> HttpResponse:
    """Pin with `pinned=1`, unpin with `pinned=0`; every tab's sidebar follows."""
    conversation = conversation_or_404(request, pk)
    conversation = conversation_pin(
        conversation=conversation, pinned=request.POST.get("pinned", "1") == "1"
    )
    return _conversation_changed(request, conversation)


@login_required
@require_POST
def archive(request: HttpRequest, pk: int) -> HttpResponse:
    """Archive with `archived=1`, bring back with `archived=0`; every tab's sidebar
    follows."""
    conversation = conversation_or_404(request, pk)
    conversation = conversation_archive(
        conversation=conversation, archived=request.POST.get("archived", "1") == "1"
    )
    return _conversation_changed(request, conversation)


def _conversation_changed(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    data = conversation_data(conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation", "conversation": data})
    if wants_json(request):
        return JsonResponse({"conversation": data})
    return redirect("conversation", pk=conversation.pk)


@login_required
@require_GET
def archived(request: HttpRequest) -> HttpResponse:
    """The archived conversations, newest first, as sidebar items (`?before=` pages on)."""
    try:
        before = _parse_cursor(request.GET["before"]) if "before" in request.GET else None
    except ValueError:
        return HttpResponseBadRequest("Not a cursor.")
    rows, more = conversation_page(
        user=request.user, before=before, size=SIDEBAR_PAGE_SIZE, archived=True
    )
    return render(
        request,
        "conversations/_sidebar_items.html",
        {
            "conversations": rows,
            "more_cursor": _cursor(rows[-1]) if more else None,
            "more_url": reverse("archived"),
        },
    )


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """The user's conversations matching `?q=`: for the sidebar's search box the results
    alone (`?partial=1`), else a page of its own, for a browser without script."""
    query = request.GET.get("q", "")[:200]
    hits = conversation_search(user=request.user, query=query) if query.strip() else []
    context = {"query": query, "hits": hits}
    if request.GET.get("partial") == "1":
        return render(request, "conversations/_search_results.html", context)
    return render(request, "conversations/search.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """The chat page shows this form in a dialog; the page of its own serves without script
    and shows the errors of a classic post."""
    conversation = conversation_or_404(request, pk)
    if request.method == "GET":
        form = ConversationSettingsForm(initial=_settings_initial(conversation))
        return _settings_page(request, conversation, form)
    form = ConversationSettingsForm(request.POST, current_model=conversation.model)
    if not form.is_valid():
        return _invalid(request, form, conversation)
    fields = dict(form.cleaned_data)
    save = fields.pop("save_schema") and fields["answer_format"] == Conversation.AnswerFormat.SCHEMA
    try:
        with transaction.atomic():
            conversation = conversation_update_settings(conversation=conversation, **fields)
            if save:
                schema_save(
                    owner=request.user,
                    name=fields["answer_schema_name"],
                    schema=fields["answer_schema"],
                )
    except TooManySchemas as err:
        form.add_error("save_schema", f"You keep {err.args[0]} schemas: delete one first.")
        return _invalid(request, form, conversation)
    data = conversation_data(conversation)
    _publish_on_commit(request.user.pk, {"type": "conversation", "conversation": data})
    if wants_json(request):
        return JsonResponse(
            {
                "conversation": data,
                "settings": _settings_initial(conversation),
                "saved_schemas": saved_schemas_data(request.user),
            }
        )
    return redirect("conversation", pk=conversation.pk)


@login_required
@require_POST
def saved_schema_delete(request: HttpRequest, pk: int) -> JsonResponse:
    """Forget one of the user's saved schemas; conversations using it keep their copy."""
    try:
        saved = access_saved_schema(user=request.user, schema_id=pk)
    except ConversationNotFound:
        raise Http404("No such schema.") from None
    schema_delete(saved=saved)
    return JsonResponse({"saved_schemas": saved_schemas_data(request.user)})


def saved_schemas_data(user) -> list[dict]:
    """The user's saved schemas for the settings dialog's picker, the schema as the text the
    field shows."""
    return [
        {"id": s.pk, "name": s.name, "schema": json.dumps(s.schema, indent=2)}
        for s in saved_schemas(user=user)
    ]


@login_required
async def models_json(request: HttpRequest) -> JsonResponse:
    """The models the picker offers, from every provider, and a line for each provider that
    could not be listed; async, as listing them may wait on model servers."""
    return JsonResponse(await providers.model_catalog())


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


def _chat_page(request: HttpRequest, *, conversation: Conversation | None) -> HttpResponse:
    conversations, cursor = _sidebar_page(request.user, before=None)
    pinned = conversations_pinned(user=request.user)
    path = shown_path(conversation) if conversation else None
    messages, earlier = (
        message_window(path=path, limit=settings.CHAT_PAGE_MESSAGES) if path else ([], False)
    )
    _for_the_thread(request, conversation, messages)
    model = conversation.model if conversation else providers.default_model()
    initial = _settings_initial(conversation) if conversation else {"model": model}
    context = {
        "conversation": conversation,
        "leaf": path.leaf if path else None,
        "messages": messages,
        "earlier": earlier,
        "conversations": conversations,
        "pinned": pinned,
        "more_cursor": cursor,
        "model": model,
        "author": model_ids.author(model),
        # Mistral's safety prompt: other servers ignore the option, so it is not offered.
        "offers_safe_prompt": model_ids.parse(model).provider == model_ids.MISTRAL,
        "settings_form": ConversationSettingsForm(initial=initial),
        "saved_schemas": saved_schemas_data(request.user),
        "totals": totals_text(answer_totals(conversation.pk)) if conversation else "",
        # The composer's tools menu starts from the conversation's choice (static/js/toolmenu.js).
        "tools_json": json.dumps(conversation.tools if conversation else []),
    }
    return render(request, "conversations/chat.html", context)


def _for_the_thread(
    request: HttpRequest, conversation: Conversation | None, messages: list[Message]
) -> None:
    """What the thread's template shows of each message beyond its row."""
    reported = (
        reported_message_ids(user=request.user, conversation_id=conversation.pk)
        if conversation
        else set()
    )
    with_tool_calls(messages)
    for message in messages:
        message.tools = tool_calls_data(message.tool_call_list or [])
        message.reported = message.pk in reported
        # Answers cut by a restart were never rendered whole; ones still streaming are
        # replaced by their live state as soon as the socket subscribes.
        if message.role == Message.Role.ASSISTANT and message.text and not message.html:
            message.html = render_markdown(message.text)
        message.meta = answer_meta(message)
        message.author = model_ids.author(message.model)


def _sidebar_page(
    user, *, before: tuple[datetime, int] | None
) -> tuple[list[Conversation], str | None]:
    """One page of the sidebar, newest first, and the cursor of the next page."""
    rows, more = conversation_page(user=user, before=before, size=SIDEBAR_PAGE_SIZE)
    return rows, _cursor(rows[-1]) if more else None


def _cursor(conversation: Conversation) -> str:
    micros = (conversation.updated_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{conversation.pk}"


def _parse_cursor(value: str) -> tuple[datetime, int]:
    """ValueError for anything but a cursor `_cursor` could have made."""
    micros, pk = value.split("_")
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), parse_id(pk)
    except OverflowError:  # a time no row can have
        raise ValueError(value) from None


def _settings_initial(conversation: Conversation) -> dict:
    """The settings as the dialog's fields show them: the schema as indented text."""
    schema = conversation.answer_schema
    return {
        **conversation.settings(),
        "answer_schema": "" if schema is None else json.dumps(schema, indent=2),
    }


def _settings_page(request, conversation, form, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "conversations/settings.html",
        {"conversation": conversation, "form": form},
        status=status,
    )


def _invalid(request: HttpRequest, form, conversation: Conversation) -> HttpResponse:
    if wants_json(request):
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


def _publish_on_commit(user_id: int, frame: dict) -> None:
    transaction.on_commit(lambda: broadcast.user_publish_sync(user_id, frame))
