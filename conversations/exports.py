"""A user's conversations exported: JSON in a documented, versioned format (docs/export.md)
with the whole tree, the settings and the attachments' metadata; the same in a zip with the
files; or Markdown, the branch shown of each. Every form is produced as it is read, a few
conversations at a time, so an export of everything never sits whole in memory.

Message ids in an export are its own (1, 2, ... within a conversation), so it reveals
nothing of the site's rows and imports anywhere.
"""

import datetime
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import orjson

from conversations.models import Attachment, Conversation, Document, Message, ToolCall
from conversations.parsers.imports import FORMAT, VERSION
from conversations.tree import Tree, shown_leaf

# Conversations read per trip to the database.
BATCH = 50


def conversations_to_export(*, user, ids: list[int] | None) -> list[int]:
    """The ids of the user's conversations to export: `ids` among them (others' are not
    there), or all, oldest first."""
    rows = Conversation.objects.filter(owner=user, temporary=False)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    return list(rows.order_by("created_at", "id").values_list("pk", flat=True))


def json_chunks(ids: list[int], *, files: list | None = None) -> Iterator[bytes]:
    """The export as JSON, piece by piece; with `files`, each image and document is named
    by its path in the zip, and appended to `files` as (path, file field)."""
    head = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _now(),
        "files": files is not None,
    }
    yield orjson.dumps(head)[:-1] + b',"conversations":['
    first = True
    for conversation, _ in _exported(ids, files):
        yield (b"" if first else b",") + orjson.dumps(conversation)
        first = False
    yield b"]}"


def zip_chunks(ids: list[int]) -> Iterator[bytes]:
    """The export as a zip: export.json and, under files/, every image and document the
    conversations hold, written as it goes (a zip stream needs no seeking)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("export.json", "w", force_zip64=True) as entry:
            for chunk in json_chunks(ids, files=(archive_files := [])):
                entry.write(chunk)
                yield from sink.take()
        for name, field in archive_files:
            with field.open("rb") as source, archive.open(name, "w", force_zip64=True) as entry:
                while block := source.read(1 << 20):
                    entry.write(block)
                    yield from sink.take()
    yield from sink.take()


def markdown_chunks(ids: list[int]) -> Iterator[bytes]:
    """Each conversation's branch shown, as Markdown: a heading, then who said what."""
    for conversation, shown in _exported(ids):
        by_key = {m["id"]: m for m in conversation["messages"]}
        lines = [f"# {conversation['title'] or 'New chat'}", ""]
        for key in shown:
            message = by_key[key]
            who = "You" if message["role"] == "user" else (message["model"] or "Answer")
            lines += [f"**{who}:**", "", message["text"], ""]
            for attachment in message["attachments"] + message["documents"]:
                lines += [f"*Attached: {attachment['name']}*", ""]
        yield ("\n".join(lines) + "\n---\n\n").encode()


def _exported(ids: list[int], files: list | None = None) -> Iterator[tuple[dict, list[int]]]:
    """Each conversation in the export's shape, with the keys of its branch shown."""
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        conversations = Conversation.objects.filter(pk__in=batch).order_by("created_at", "id")
        messages: defaultdict[int, list[Message]] = defaultdict(list)
        for message in Message.objects.filter(conversation_id__in=batch).order_by("id"):
            messages[message.conversation_id].append(message)
        every = [m.pk for rows in messages.values() for m in rows]
        attachments = _by_message(Attachment.objects.filter(message_id__in=every), "position")
        documents = _by_message(Document.objects.filter(message_id__in=every), "position")
        calls = _by_message(ToolCall.objects.filter(message_id__in=every), "step", "position")
        for conversation in conversations:
            rows = messages[conversation.pk]
            keys = {m.pk: n for n, m in enumerate(rows, 1)}
            tree = Tree.of([(m.pk, m.parent_id) for m in rows])
            leaf = shown_leaf(tree, conversation.shown_leaf_id)
            shown = [keys[pk] for pk in tree.path_to(leaf)] if leaf is not None else []
            data = {
                "title": conversation.title,
                "created_at": conversation.created_at.isoformat(),
                "updated_at": conversation.updated_at.isoformat(),
                "settings": {**conversation.settings(), "tools": conversation.tools},
                "shown_leaf": shown[-1] if shown else None,
                "messages": [_message(m, keys, attachments, documents, calls, files) for m in rows],
            }
            yield data, shown


def _message(
    message: Message,
    keys: dict[int, int],
    attachments: dict[int, list],
    documents: dict[int, list],
    calls: dict[int, list],
    files: list | None,
) -> dict[str, Any]:
    key = keys[message.pk]
    data: dict[str, Any] = {
        "id": key,
        "parent": keys.get(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "text": message.text,
        "status": message.status,
        "model": message.model,
        "created_at": message.created_at.isoformat(),
        "finish_reason": message.finish_reason,
        "notice": message.notice,
        "error_text": message.error_text,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "cost_usd": str(message.cost_usd) if message.cost_usd is not None else None,
        "attachments": [],
        "documents": [],
        "tool_calls": [
            {
                "step": c.step,
                "name": c.name,
                "tool": c.tool,
                "arguments": c.arguments,
                "status": c.status,
                "result": c.result,
                "duration_ms": c.duration_ms,
            }
            for c in calls.get(message.pk, [])
        ],
    }
    for n, image in enumerate(attachments.get(message.pk, []), 1):
        entry = {
            "name": image.name,
            "mime": image.mime,
            "width": image.width,
            "height": image.height,
        }
        if files is not None:
            entry["file"] = _file_name(files, key, n, image.name, image.original)
        data["attachments"].append(entry)
    for n, document in enumerate(documents.get(message.pk, []), 1):
        entry = {
            "name": document.name,
            "mime": document.mime,
            "size": document.size,
            "page_count": document.page_count,
        }
        if files is not None:
            entry["file"] = _file_name(files, key, n, document.name, document.file, "d")
        data["documents"].append(entry)
    return data


def _file_name(files: list, key: int, n: int, name: str, field: Any, kind: str = "i") -> str:
    suffix = PurePosixPath(name).suffix.lower()[:8]
    path = f"files/{len(files) + 1:06d}-m{key}-{kind}{n}{suffix}"
    files.append((path, field))
    return path


def _by_message(rows, *order: str) -> dict[int, list]:
    out: defaultdict[int, list] = defaultdict(list)
    for row in rows.order_by("message_id", *order, "id"):
        out[row.message_id].append(row)
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class _Sink:
    """What zipfile writes to, emptied by the generator after each write."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        if self._parts:
            parts, self._parts = self._parts, []
            yield b"".join(parts)
