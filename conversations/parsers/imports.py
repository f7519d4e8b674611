"""An import file read in the sandbox: our own export (JSON, or its zip) or ChatGPT's
`conversations.json` (alone or in ChatGPT's export zip), turned into plain conversations
the site can store: each a title, settings and messages as a tree (a key and its parent's
key), or the reason it cannot be imported.

A hostile file costs the sandbox child its limits (memory, time), never the site: a zip is
checked from its directory (the entry's size, its compression ratio) and inflated through a
counter, JSON nested past orjson's depth limit is refused, and every string and list is
capped here before it reaches a row.
"""

import io
import zipfile
from typing import Any

import orjson

from conversations.parsers.errors import ImportRejected

FORMAT = "mistral-chat-export"
VERSION = 1

# The most an import may hold, whatever its file's size.
MAX_JSON_BYTES = 200_000_000
MAX_RATIO = 200  # a zip entry inflating more than this is a bomb, not an export
MAX_CONVERSATIONS = 10_000
MAX_MESSAGES = 20_000  # per conversation
MAX_TEXT = 400_000  # characters of one message
MAX_TITLE = 200

ROLES = ("user", "assistant")
ENDED = ("complete", "stopped", "failed", "interrupted")


def read(data: bytes, name: str) -> dict[str, Any]:
    """`{"source": "mistral-chat" | "chatgpt", "conversations": [...]}`: each conversation
    either `{"title", "settings", "messages", "shown", "left_out"}` or `{"title", "error"}`."""
    raw = _json_bytes(data, name)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        deep = "depth" in str(err).lower() or "recursion" in str(err).lower()
        raise ImportRejected(
            "not_json",
            f"{name}: {'its JSON is nested too deeply' if deep else 'it is not valid JSON'}.",
        ) from None
    del raw
    if isinstance(value, dict) and value.get("format") == FORMAT:
        if value.get("version") != VERSION:
            raise ImportRejected(
                "unknown_version",
                f"{name}: this export's version ({str(value.get('version'))[:20]}) is not one "
                f"this site reads ({VERSION}).",
            )
        items = value.get("conversations")
        source, convert = "mistral-chat", _ours
    elif isinstance(value, list) and (not value or _looks_like_chatgpt(value[0])):
        items, source, convert = value, "chatgpt", _chatgpt
    else:
        raise ImportRejected(
            "not_an_export",
            f"{name}: this is neither an export of this site nor ChatGPT's conversations.json.",
        )
    if not isinstance(items, list):
        raise ImportRejected("not_an_export", f"{name}: its conversations are not a list.")
    if len(items) > MAX_CONVERSATIONS:
        raise ImportRejected(
            "too_many",
            f"{name}: it holds {len(items):,} conversations; at most {MAX_CONVERSATIONS:,} "
            "go in one import.",
        )
    conversations = []
    for position, item in enumerate(items, 1):
        title = _title(item.get("title") if isinstance(item, dict) else None, position)
        try:
            conversations.append(convert(item, title))
        except _Skip as skip:
            conversations.append({"title": title, "error": str(skip)})
    return {"source": source, "conversations": conversations}


class _Skip(Exception):
    """This conversation cannot be imported; the message says why."""


def _json_bytes(data: bytes, name: str) -> bytes:
    if not data.startswith(b"PK\x03\x04"):
        return data
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ImportRejected("bad_zip", f"{name}: the zip file is damaged.") from None
    info = names.get("export.json") or names.get("conversations.json")
    if info is None:
        raise ImportRejected(
            "not_an_export",
            f"{name}: the zip holds neither export.json (this site's) nor conversations.json "
            "(ChatGPT's).",
        )
    if info.file_size > MAX_JSON_BYTES or info.file_size > max(info.compress_size, 1) * MAX_RATIO:
        raise ImportRejected(
            "zip_bomb", f"{name}: {info.filename} inflates far beyond any real export."
        )
    out = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(1 << 20):
                out += chunk
                if len(out) > info.file_size or len(out) > MAX_JSON_BYTES:
                    raise ImportRejected(
                        "zip_bomb", f"{name}: {info.filename} inflates past what its zip says."
                    )
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ImportRejected("bad_zip", f"{name}: the zip file is damaged.") from None
    return bytes(out)


def _title(value: Any, position: int) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()[:MAX_TITLE]
    return f"Imported conversation {position}"


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Skip(f"{what} is not text")
    if len(value) > MAX_TEXT:
        raise _Skip(f"{what} is longer than {MAX_TEXT:,} characters")
    return value


def _number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if low <= value <= high else None


def _integer(value: Any, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= high else None


# Our own export


def _ours(item: Any, title: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _Skip("it is not an object")
    messages = item.get("messages")
    if not isinstance(messages, list):
        raise _Skip("its messages are not a list")
    if len(messages) > MAX_MESSAGES:
        raise _Skip(f"it has more than {MAX_MESSAGES:,} messages")
    out, keys = [], set()
    for message in messages:
        if not isinstance(message, dict):
            raise _Skip("a message is not an object")
        key, parent = message.get("id"), message.get("parent")
        if _integer(key, 2**31) is None or key in keys:
            raise _Skip("a message id is missing or repeated")
        if parent is not None and parent not in keys:
            raise _Skip("a message comes before its parent")
        role = message.get("role")
        if role not in ROLES:
            raise _Skip(f"a message has the role {str(role)[:20]!r}")
        keys.add(key)
        status = message.get("status")
        out.append(
            {
                "key": key,
                "parent": parent,
                "role": role,
                "text": _text(message.get("text"), "a message's text"),
                "model": _text(message.get("model"), "a message's model")[:400],
                "status": status if status in ENDED else "interrupted",
                "finish_reason": _text(message.get("finish_reason"), "a finish reason")[:32],
                "notice": _text(message.get("notice"), "a notice")[:2000],
            }
        )
    shown = item.get("shown_leaf")
    settings = item.get("settings") if isinstance(item.get("settings"), dict) else {}
    return {
        "title": title,
        "settings": _settings(settings),
        "messages": out,
        "shown": shown if shown in keys else None,
        "left_out": 0,
    }


def _settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings worth keeping, each only when valid (else the default)."""
    out: dict[str, Any] = {}
    model = raw.get("model")
    if isinstance(model, str) and 0 < len(model) <= 400:
        out["model"] = model
    prompt = raw.get("system_prompt")
    if isinstance(prompt, str) and len(prompt) <= MAX_TEXT:
        out["system_prompt"] = prompt
    out["temperature"] = _number(raw.get("temperature"), 0, 2)
    out["top_p"] = _number(raw.get("top_p"), 0, 1)
    out["max_tokens"] = _integer(raw.get("max_tokens"), 2**31 - 1)
    out["random_seed"] = _integer(raw.get("random_seed"), 2**31 - 1)
    out["safe_prompt"] = raw.get("safe_prompt") is True
    if raw.get("answer_format") in ("text", "json_object", "json_schema"):
        out["answer_format"] = raw["answer_format"]
    name = raw.get("answer_schema_name")
    if isinstance(name, str) and len(name) <= 64:
        out["answer_schema_name"] = name
    if isinstance(raw.get("answer_schema"), dict):
        out["answer_schema"] = raw["answer_schema"]
    tools = raw.get("tools")
    if isinstance(tools, list) and all(isinstance(t, str) and len(t) <= 200 for t in tools):
        out["tools"] = tools[:128]
    return out


# ChatGPT's conversations.json


def _looks_like_chatgpt(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("mapping"), dict)


def _chatgpt(item: Any, title: str) -> dict[str, Any]:
    """ChatGPT's tree (`mapping`: node id → {message, parent, children}) as ours: its user
    and assistant messages with text, each under the nearest kept ancestor; system and tool
    messages, hidden ones and messages without text are left out (and counted), and so is a
    message that would follow one of its own role (a tool's turn between two answers)."""
    if not isinstance(item, dict) or not isinstance(item.get("mapping"), dict):
        raise _Skip("it has no message tree (mapping)")
    mapping: dict[str, Any] = item["mapping"]
    if len(mapping) > MAX_MESSAGES:
        raise _Skip(f"it has more than {MAX_MESSAGES:,} messages")
    parents = {}
    for node_id, node in mapping.items():
        if not isinstance(node, dict):
            raise _Skip("a node of its tree is not an object")
        parent = node.get("parent")
        parents[node_id] = parent if isinstance(parent, str) and parent in mapping else None
    order = _topological(parents)
    kept: dict[str, dict[str, Any]] = {}
    keys: dict[str, int] = {}
    left_out = 0
    out = []
    for node_id in order:
        node = mapping[node_id]
        message = node.get("message")
        kept_parent = parents[node_id]
        while kept_parent is not None and kept_parent not in keys:
            kept_parent = parents[kept_parent]
        converted = _chatgpt_message(message)
        if converted is None:
            left_out += _shown_in_chatgpt(message)
            continue
        parent_role = kept[kept_parent]["role"] if kept_parent is not None else None
        if (parent_role or "assistant") == converted["role"]:
            left_out += 1  # two of one role in a row: the tree is ours only alternating
            continue
        key = len(keys) + 1
        keys[node_id] = key
        converted.update(key=key, parent=keys[kept_parent] if kept_parent is not None else None)
        kept[node_id] = converted
        out.append(converted)
    current = item.get("current_node")
    while isinstance(current, str) and current in parents and current not in keys:
        current = parents[current]
    if not out:
        raise _Skip("it has no question or answer with text")
    return {
        "title": title,
        "settings": {},
        "messages": out,
        "shown": keys.get(current) if isinstance(current, str) else None,
        "left_out": left_out,
    }


def _topological(parents: dict[str, str | None]) -> list[str]:
    """Node ids with every parent before its children (a cycle's nodes are left out)."""
    children: dict[str | None, list[str]] = {}
    for node_id, parent in parents.items():
        children.setdefault(parent, []).append(node_id)
    order, stack = [], list(reversed(children.get(None, [])))
    while stack:
        node_id = stack.pop()
        order.append(node_id)
        stack.extend(reversed(children.get(node_id, [])))
    return order


def _shown_in_chatgpt(message: Any) -> bool:
    """A message ChatGPT's page showed (a tool's output, say), which ours cannot hold."""
    if not isinstance(message, dict):
        return False
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    return not metadata.get("is_visually_hidden_from_conversation")


def _visible(message: Any) -> bool:
    if not isinstance(message, dict):
        return False
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    return role in ROLES and not metadata.get("is_visually_hidden_from_conversation")


def _chatgpt_message(message: Any) -> dict[str, Any] | None:
    if not _visible(message):
        return None
    role = message["author"]["role"]
    content = message.get("content")
    kinds = ("text", "multimodal_text")
    if not isinstance(content, dict) or content.get("content_type") not in kinds:
        return None
    parts = content.get("parts")
    if not isinstance(parts, list):
        return None
    text = "\n\n".join(p for p in parts if isinstance(p, str)).strip()
    if not text:
        return None
    if len(text) > MAX_TEXT:
        raise _Skip(f"a message is longer than {MAX_TEXT:,} characters")
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    slug = metadata.get("model_slug")
    named = isinstance(slug, str) and slug and role == "assistant"
    return {
        "role": role,
        "text": text,
        "model": "",
        "status": "complete",
        "finish_reason": "",
        "notice": f"Imported from ChatGPT ({slug[:80]})." if named else "",
    }
