"""The review panel in Django's admin: conversations as read-only transcripts, rendered as
their users saw them, with a review status and notes, and an append-only audit of who opened
what. Usage, cost and prices are review/usage_admin.py; the exports review/exports.py.

Transcripts are never editable here, by anyone: the only fields a form saves are the review
status and notes, through services.conversation_review_set. Model output is shown only as
the sanitized HTML the renderer made (or makes now), never as raw text marked safe.

Over 400 lines: ConversationAdmin is one class, its list filters, columns, transcript view,
review actions and exports are what the panel is, and they read best together.
"""

import csv
import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from conversations.live.frames import tool_calls_data
from conversations.models import (
    Attachment,
    Conversation,
    Document,
    Message,
    ReviewAudit,
)
from conversations.rendering import render_markdown
from conversations.review.exports import conversations_export, csv_safe, part_line, usd
from conversations.review.reads import review_priority, review_queue, review_transcript
from conversations.services import conversation_review_set, review_audit_record

ENDED_BADLY = (Message.Status.FAILED, Message.Status.STOPPED, Message.Status.INTERRUPTED)
# A spreadsheet runs a cell starting with one of these as a formula; model output and user
# text are untrusted, so such cells are exported with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# Filters


class HasImagesFilter(admin.SimpleListFilter):
    title = "images"
    parameter_name = "images"

    def lookups(self, request, model_admin):
        return [("yes", "With images"), ("no", "Without images")]

    def queryset(self, request, queryset):
        images = Exists(Attachment.objects.filter(message__conversation=OuterRef("pk")))
        if self.value() == "yes":
            return queryset.filter(images)
        if self.value() == "no":
            return queryset.filter(~images)
        return queryset


class HasDocumentsFilter(admin.SimpleListFilter):
    title = "documents"
    parameter_name = "documents"

    def lookups(self, request, model_admin):
        return [("yes", "With documents"), ("no", "Without documents")]

    def queryset(self, request, queryset):
        documents = Exists(Document.objects.filter(message__conversation=OuterRef("pk")))
        if self.value() == "yes":
            return queryset.filter(documents)
        if self.value() == "no":
            return queryset.filter(~documents)
        return queryset


class AnswerEndFilter(admin.SimpleListFilter):
    title = "answers that did not finish"
    parameter_name = "answers"

    def lookups(self, request, model_admin):
        return [("any", "Any of these"), *((s.value, s.label) for s in ENDED_BADLY)]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        statuses = ENDED_BADLY if value == "any" else [value]
        return queryset.filter(
            Exists(Message.objects.filter(conversation=OuterRef("pk"), status__in=statuses))
        )


class ReportedFilter(admin.SimpleListFilter):
    title = "reported by its user"
    parameter_name = "reported"

    def lookups(self, request, model_admin):
        return [("yes", "Reported"), ("no", "Not reported")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(reported=self.value() == "yes")
        return queryset


# Conversations


class ReviewForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["review_status", "review_notes"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    form = ReviewForm
    list_display = (
        "display_title",
        "owner",
        "model",
        "message_count",
        "tokens",
        "cost",
        "updated_at",
        "review_status",
        "reported",
    )
    list_display_links = ("display_title",)
    list_filter = (
        ("owner", admin.RelatedOnlyFieldListFilter),
        "model",
        "created_at",
        HasImagesFilter,
        HasDocumentsFilter,
        AnswerEndFilter,
        "review_status",
        ReportedFilter,
    )
    list_select_related = ("owner",)
    search_fields = ("title",)  # and message text and usernames: see get_search_results
    search_help_text = "Searches titles, the text of every message, and usernames."
    date_hierarchy = "updated_at"
    list_per_page = 50
    show_full_result_count = False  # one COUNT less per page; the filtered count stays
    actions = ("mark_reviewed", "mark_escalated", "export_json", "export_csv")
    fieldsets = (
        ("Review", {"fields": ("review_status", "review_notes", "reviewed_by", "reviewed_at")}),
        (
            "Conversation",
            {
                "fields": (
                    "owner",
                    "title",
                    "model",
                    "created_at",
                    "updated_at",
                    "settings_summary",
                    "usage_summary",
                )
            },
        ),
        ("Transcript", {"fields": ("transcript",), "classes": ("transcript-set",)}),
    )
    readonly_fields = (
        "reviewed_by",
        "reviewed_at",
        "owner",
        "title",
        "model",
        "created_at",
        "updated_at",
        "settings_summary",
        "usage_summary",
        "transcript",
    )

    class Media:
        css = {"all": ("css/highlight.css", "css/admin-review.css")}

    # Permissions: reviewers view and set the review; nobody adds or edits a transcript.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_review_permission(request)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.review_conversation")

    # The list

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return review_queue()

    def get_ordering(self, request: HttpRequest) -> list:
        return [review_priority().asc(), "-updated_at", "-id"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        """Titles, usernames and message text, with EXISTS rather than a join, so a
        conversation with many matching messages is listed once and no DISTINCT is needed."""
        term = search_term.strip()
        if not term:
            return queryset, False
        in_messages = Exists(
            Message.objects.filter(conversation=OuterRef("pk"), text__icontains=term)
        )
        matches = Q(title__icontains=term) | Q(owner__username__icontains=term) | in_messages
        return queryset.filter(matches), False

    @admin.display(description="title", ordering="title")
    def display_title(self, obj: Conversation) -> str:
        return str(obj)

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description="tokens", ordering="tokens")
    def tokens(self, obj: Conversation) -> str:
        return f"{obj.tokens:,}"

    @admin.display(description="cost", ordering="cost")
    def cost(self, obj: Conversation) -> str:
        return usd(obj.cost)

    @admin.display(description="reported", boolean=True, ordering="reported")
    def reported(self, obj: Conversation) -> bool:
        return obj.reported

    # The conversation page

    @admin.display(description="settings")
    def settings_summary(self, obj: Conversation) -> str:
        values = {
            "temperature": obj.temperature,
            "top_p": obj.top_p,
            "max_tokens": obj.max_tokens,
            "random_seed": obj.random_seed,
        }
        shown = [f"{k} {v}" for k, v in values.items() if v is not None]
        if obj.safe_prompt:
            shown.append("safe prompt")
        if obj.system_prompt:
            shown.append(f"system prompt: {obj.system_prompt[:300]}")
        return " · ".join(shown) or "model defaults"

    @admin.display(description="usage")
    def usage_summary(self, obj: Conversation) -> str:
        return f"{obj.message_count} messages · {obj.tokens:,} tokens · {usd(obj.cost)}"

    @admin.display(description="")
    def transcript(self, obj: Conversation) -> SafeString:
        """The whole conversation as its user saw it, every branch of it: answers as their
        stored sanitized HTML (rendered now, the same way, if a restart cut them before it
        was stored)."""
        transcript = review_transcript(conversation=obj)
        for message in transcript.messages:
            if message.role == Message.Role.ASSISTANT and message.text and not message.html:
                message.html = render_markdown(message.text)
            message.review_cost = sum((c.cost_usd for c in message.review_calls), Decimal(0))
            message.review_steps = review_steps(message)
            message.review_parts = [  # documents are listed from their rows, pages and all
                part_line(part)
                for part in message.parts or []
                if not (isinstance(part, dict) and part.get("type") == "document")
            ]
        branches = transcript.branches
        return render_to_string(
            "admin/conversations/transcript.html",
            {"branches": branches, "several": len(branches) > 1},
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """Every time a staff member opens a conversation, an audit row says who and when."""
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            conversation = Conversation.objects.filter(pk=unquote(object_id)).first()
            if conversation is not None:
                review_audit_record(conversation=conversation, staff=request.user)
        return response

    def save_model(self, request: HttpRequest, obj: Conversation, form, change: bool) -> None:
        conversation_review_set(
            conversation_ids=[obj.pk],
            reviewer=request.user,
            status=form.cleaned_data["review_status"],
            notes=form.cleaned_data["review_notes"],
        )

    # Actions

    @admin.action(description="Mark selected conversations as reviewed", permissions=["review"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        self._set_status(request, queryset, Conversation.ReviewStatus.REVIEWED)

    @admin.action(description="Escalate selected conversations", permissions=["review"])
    def mark_escalated(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        self._set_status(request, queryset, Conversation.ReviewStatus.ESCALATED)

    def _set_status(self, request: HttpRequest, queryset: QuerySet, status: str) -> None:
        changed = conversation_review_set(
            conversation_ids=list(queryset.values_list("pk", flat=True)),
            reviewer=request.user,
            status=status,
        )
        label = Conversation.ReviewStatus(status).label.lower()
        self.message_user(
            request, f"{changed} conversation{'s' if changed != 1 else ''} marked {label}."
        )

    @admin.action(description="Export selected conversations as JSON", permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        data = {"exported_at": timezone.now(), "conversations": conversations_export(queryset)}
        response = HttpResponse(
            json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False),
            content_type="application/json",
        )
        response["Content-Disposition"] = 'attachment; filename="conversations.json"'
        return response

    @admin.action(description="Export selected conversations as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="conversations.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "conversation_id",
                "owner",
                "title",
                "review_status",
                "review_notes",
                "message_id",
                "parent_id",
                "on_shown_branch",
                "role",
                "status",
                "model",
                "prompt_tokens",
                "completion_tokens",
                "created_at",
                "text",
                "images",
                "reports",
            ]
        )
        for conversation in conversations_export(queryset):
            for m in conversation["messages"]:
                writer.writerow(
                    csv_safe(
                        [
                            conversation["id"],
                            conversation["owner"],
                            conversation["title"],
                            conversation["review_status"],
                            conversation["review_notes"],
                            m["id"],
                            m["parent"],
                            m["on_shown_branch"],
                            m["role"],
                            m["status"],
                            m["model"],
                            m["prompt_tokens"],
                            m["completion_tokens"],
                            m["created_at"].isoformat(),
                            m["text"],
                            "; ".join(a["name"] for a in m["images"]),
                            "; ".join(f"{r['user']}: {r['reason']}" for r in m["reports"]),
                        ]
                    )
                )
        return response


# The audit log: superusers read it; nobody writes it through the site.


@admin.register(ReviewAudit)
class ReviewAuditAdmin(admin.ModelAdmin):
    list_display = ("opened_at", "staff", "conversation_link")
    list_filter = (("staff", admin.RelatedOnlyFieldListFilter), "opened_at")
    list_select_related = ("staff",)
    search_fields = ("conversation_title", "staff__username")
    date_hierarchy = "opened_at"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="conversation")
    def conversation_link(self, obj: ReviewAudit) -> str:
        if obj.conversation_id is None:
            return f"{obj.conversation_title} (deleted)"
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}</a>', url, obj.conversation_title)


# Prices and usage


def review_steps(message: Message) -> list[dict]:
    """An answer's tool steps for the transcript: each model call that asked for tools (its
    ApiCall row: tokens and cost), with the calls it asked for, their arguments and results
    as the user saw them (sanitized)."""
    by_step: dict[int, list] = {}
    for call in message.tool_call_list or []:
        by_step.setdefault(call.step, []).append(call)
    asking = [c for c in message.review_calls if c.status == "tool_calls"]
    return [
        {
            "number": number,
            "call": asking[number - 1] if number <= len(asking) else None,
            "tools": tool_calls_data(calls),
        }
        for number, calls in sorted(by_step.items())
    ]
