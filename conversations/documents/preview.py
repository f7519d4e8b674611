"""Before a question is sent: how its documents will go (full text or retrieval), how many
tokens the request will carry, and roughly what that costs, for the composer's line under
the attached documents."""

from typing import Any

from conversations.documents import retrieval
from conversations.documents.ranking import passages_of
from conversations.documents.reading import count_tokens
from conversations.models import Document
from conversations.selectors import (
    access_conversation,
    document_ids_of,
    documents_with_pages,
    message_history,
)
from conversations.usage import cost_estimate


def request_preview(
    *, user, conversation_id: int | None, document_ids: list[int], model: str, budget: int
) -> dict[str, Any]:
    """The estimate for a question to `model` in the conversation (None: a new one) with
    the user's unsent `document_ids` attached; `budget` is the documents' share of the
    model's context window. Raises ConversationNotFound for someone else's conversation."""
    history = []
    if conversation_id is not None:
        conversation = access_conversation(user=user, conversation_id=conversation_id)
        history = message_history(conversation_id=conversation.pk)
    owned = Document.objects.filter(pk__in=document_ids, owner=user, message__isnull=True)
    ids = document_ids_of(history) + list(owned.values_list("pk", flat=True))
    documents = documents_with_pages(document_ids=ids)
    if not documents:
        return {"mode": "", "documents": 0}
    mode, tokens = retrieval.choose_mode(documents, budget)
    passages = None
    if mode == retrieval.RETRIEVAL:
        # Which passages go depends on the question; how many tokens they take, hardly.
        every = [p for d in documents for p in passages_of(d)]
        plan = retrieval.plan_retrieval(documents, budget, "", every, "")
        tokens, passages = plan.tokens, len(plan.passages)
    total = tokens + sum(count_tokens(m.text) for m in history)
    cost = cost_estimate(model, total)
    return {
        "mode": mode,
        "documents": len(documents),
        "document_tokens": tokens,
        "tokens": total,
        "budget": budget,
        "passages": passages,
        "model": model,
        "cost_usd": f"{cost:.6f}" if cost is not None else None,
    }
