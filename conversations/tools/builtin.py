"""The tools built in, which work offline: the current date and time, and a search of the
conversation's own documents (the retrieval documents/ranking.py already does, as a tool,
so the model decides when to look)."""

import datetime
import zoneinfo
from typing import Any

from channels.db import database_sync_to_async

from conversations.documents.ranking import rank
from conversations.selectors import documents_with_pages
from conversations.tools.context import Context, ToolFailed

DATETIME = "builtin:datetime"
DOCUMENTS = "builtin:documents"

# How many passages one search returns.
SEARCH_PASSAGES = 6


async def run(key: str, arguments: dict[str, Any], context: Context) -> str:
    if key == DATETIME:
        return now_text(arguments.get("timezone"))
    if key == DOCUMENTS:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolFailed("Give a query: the words to look for.")
        return await documents_search(query, context)
    raise ToolFailed(f"There is no built-in tool {key}.")


def now_text(zone: Any = None) -> str:
    name = zone if isinstance(zone, str) and zone.strip() else "UTC"
    try:
        tz = zoneinfo.ZoneInfo(name.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ToolFailed(
            f"Unknown time zone {name!r}: use an IANA name such as Europe/Paris."
        ) from None
    now = datetime.datetime.now(tz)
    iso = now.isoformat(timespec="seconds")
    return f"{now:%A %d %B %Y, %H:%M:%S} ({name.strip()}, UTC{now:%z}); ISO 8601: {iso}"


async def documents_search(query: str, context: Context) -> str:
    """The passages of the conversation's documents that best match `query`, with their
    document and page; only documents of the path being answered are searched."""
    if not context.document_ids:
        return "This conversation has no documents to search."
    documents = await database_sync_to_async(documents_with_pages)(
        document_ids=list(context.document_ids)
    )
    if not documents:
        return "The conversation's documents are not ready yet."
    ranked, _ = await rank(documents, query, context.user_id, context.conversation_id)
    passages = ranked[:SEARCH_PASSAGES]
    if not passages:
        return "Nothing in the documents matches."
    return "\n\n".join(f'[Document "{c.name}", page {c.page}]\n{c.text}' for c in passages)
