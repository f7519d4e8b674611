"""Conversations imported from a file: this site's export (docs/export.md) or ChatGPT's
conversations.json. The file is read in the sandbox (parsers/imports.py); here each
conversation it holds is stored as a new one, all or nothing: an import never overwrites,
and a conversation that cannot be stored whole is skipped, with the reason reported.

Files are not imported (an export's images and documents would have to be checked and read
again as uploads): a message keeps its text, and the report says how many were left out.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from conversations.models import Conversation, Message
from conversations.parsers.errors import ImportRejected
from conversations.parsing import parse
from conversations.rendering import render_markdown


@dataclass
class ImportReport:
    source: str = ""
    imported: list[dict[str, Any]] = field(default_factory=list)  # {"id", "title", "messages"}
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"title", "reason"}
    left_out: int = 0  # messages of imported conversations that could not come (tool turns)


def import_file(*, user, data: bytes, name: str, default_model: str) -> ImportReport:
    """Store what the file holds as the user's new conversations; ImportRejected when the
    file as a whole cannot be read (it names the file and why)."""
    parsed = parse("import_read", data, name, name=name, rejected=ImportRejected)
    report = ImportReport(source=parsed["source"])
    for item in parsed["conversations"]:
        if "error" in item:
            report.skipped.append({"title": item["title"], "reason": item["error"]})
            continue
        try:
            conversation = _store(user, item, default_model)
        except (DatabaseError, ValueError) as err:
            report.skipped.append({"title": item["title"], "reason": _reason(err)})
            continue
        report.imported.append(
            {"id": conversation.pk, "title": conversation.title, "messages": len(item["messages"])}
        )
        report.left_out += item["left_out"]
    return report


@transaction.atomic
def _store(user, item: dict[str, Any], default_model: str) -> Conversation:
    settings = dict(item["settings"])
    settings.setdefault("model", default_model)
    schema = settings.get("answer_schema")
    if schema is not None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError:
            settings.pop("answer_schema")
            settings["answer_format"] = Conversation.AnswerFormat.TEXT
    conversation = Conversation.objects.create(owner=user, title=item["title"], **settings)
    rows = [
        Message(
            conversation=conversation,
            role=message["role"],
            text=message["text"],
            html=render_markdown(message["text"]) if message["role"] == "assistant" else "",
            status=message["status"] if message["role"] == "assistant" else "complete",
            model=message["model"],
            finish_reason=message["finish_reason"],
            notice=message["notice"],
        )
        for message in item["messages"]
    ]
    Message.objects.bulk_create(rows, batch_size=500)
    by_key = {message["key"]: row for message, row in zip(item["messages"], rows, strict=True)}
    children = []
    for message, row in zip(item["messages"], rows, strict=True):
        if message["parent"] is not None:
            row.parent_id = by_key[message["parent"]].pk
            children.append(row)
    Message.objects.bulk_update(children, ["parent"], batch_size=500)
    if item["shown"] is not None:
        conversation.shown_leaf_id = by_key[item["shown"]].pk
        conversation.save(update_fields=["shown_leaf"])
    return conversation


def _reason(err: Exception) -> str:
    if isinstance(err, DatabaseError):
        return "the database refused it"
    return str(err)[:200]
