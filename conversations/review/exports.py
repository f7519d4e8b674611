"""Conversations written out for reviewers, as JSON or CSV from the admin's actions: each
with its messages (every branch of its tree, each message with its parent and whether it is
on the branch shown to the user), images, documents and reports, in a few queries whatever
the selection, with spreadsheet formulas defused and no long strings (data URLs) copied."""

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from conversations.models import Attachment, Conversation, Document, Message, Report
from conversations.tree import Tree, shown_leaf

# A spreadsheet runs a cell starting with one of these as a formula; model output and user
# text are untrusted, so such cells are exported with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def conversations_export(queryset: QuerySet[Conversation]) -> list[dict[str, Any]]:
    """The selected conversations with their messages, images, documents and reports, in
    five queries whatever the selection."""
    conversations = list(queryset.order_by("id"))
    ids = [c.pk for c in conversations]
    messages = _with_images_all(Message.objects.filter(conversation_id__in=ids).order_by("id"))
    reports: dict[int, list[dict[str, Any]]] = {}
    for report in Report.objects.filter(message__conversation_id__in=ids).select_related("user"):
        reports.setdefault(report.message_id, []).append(
            {"user": report.user.username, "reason": report.reason, "created_at": report.created_at}
        )
    documents: dict[int, list[dict[str, Any]]] = {}
    for document in Document.objects.filter(message__conversation_id__in=ids).order_by(
        "message_id", "position", "id"
    ):
        documents.setdefault(document.message_id, []).append(
            {"name": document.name, "pages": document.page_count, "mime": document.mime}
        )
    pairs: dict[int, list[tuple[int, int | None]]] = {pk: [] for pk in ids}
    for m in messages:
        pairs[m.conversation_id].append((m.pk, m.parent_id))
    shown: dict[int, int | None] = {}  # each conversation's shown leaf
    on_shown_branch: set[int] = set()
    for c in conversations:
        tree = Tree.of(pairs[c.pk])
        shown[c.pk] = leaf = shown_leaf(tree, c.shown_leaf_id)
        on_shown_branch.update(tree.path_to(leaf) if leaf is not None else [])
    by_conversation: dict[int, list[dict[str, Any]]] = {pk: [] for pk in ids}
    for m in messages:
        by_conversation[m.conversation_id].append(
            {
                "id": m.pk,
                "parent": m.parent_id,
                "on_shown_branch": m.pk in on_shown_branch,
                "role": m.role,
                "status": m.status,
                "model": m.model,
                "text": m.text,
                "error_code": m.error_code,
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "usage_estimated": m.usage_estimated,
                "created_at": m.created_at,
                "images": [
                    {"name": a.name, "sent_width": a.sent_width, "sent_height": a.sent_height}
                    for a in m.images or []
                ],
                "documents": documents.get(m.pk, []),
                "reports": reports.get(m.pk, []),
            }
        )
    return [
        {
            "id": c.pk,
            "owner": c.owner.username,
            "title": c.title,
            "model": c.model,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "review_status": c.review_status,
            "review_notes": c.review_notes,
            "tokens": c.tokens,
            "cost_usd": str(c.cost),
            "shown_leaf": shown[c.pk],
            "messages": by_conversation[c.pk],
        }
        for c in conversations
    ]


def _with_images_all(messages: QuerySet[Message]) -> list[Message]:
    """Messages of several conversations with their images: with_images per conversation
    would cost a query each."""
    rows = list(messages)
    images: dict[int, list[Attachment]] = {}
    questions = [m.pk for m in rows if m.role == Message.Role.USER]
    for attachment in Attachment.objects.filter(message_id__in=questions).order_by(
        "message_id", "position", "id"
    ):
        images.setdefault(attachment.message_id, []).append(attachment)
    for m in rows:
        if m.role == Message.Role.USER:
            m.images = images.get(m.pk, [])
    return rows


def csv_safe(row: list[Any]) -> list[Any]:
    return [
        "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value
        for value in row
    ]


def part_line(part: Any) -> str:
    """A stored content part (an attachment or document by reference) as one line: its
    short fields only, never a long string such as a data URL."""
    if not isinstance(part, dict):
        return str(type(part).__name__)
    shown = [
        f"{key}: {value}"
        for key, value in part.items()
        if isinstance(value, int | float | bool)
        or (isinstance(value, str) and len(value) <= 120 and not value.startswith("data:"))
    ]
    return ", ".join(shown)


def usd(value: Decimal | float | int) -> str:
    """Dollars with the digits that matter: most single answers cost fractions of a cent."""
    value = Decimal(value)
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= Decimal("0.01") else f"${value:.6f}"
