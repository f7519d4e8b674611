"""Structured answers: a conversation that asks for JSON, or for JSON matching a schema the
user pasted. Here is what the request's `response_format` says (the body builders only
carry it), and what the reader is shown when such an answer ends: the JSON pretty-printed
as a highlighted code block with a Download button, and a mark saying whether it parsed
and whether it matches the schema.
"""

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from conversations.answers import Outcome
from conversations.models import Conversation
from conversations.rendering import render_markdown

NOT_JSON = "The answer is not valid JSON."

# Beside the renderer's Copy button; static/js/copy.js downloads the block's text.
_DOWNLOAD_BUTTON = (
    '<button type="button" class="download-json" aria-label="Download the answer as a '
    '.json file">Download .json</button>'
)


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """A format other than text; `schema` and `name` only for json_schema."""

    type: str
    name: str = ""
    schema: dict[str, Any] | None = None

    def response_format(self) -> dict[str, Any]:
        """The request's `response_format`, as Mistral and OpenAI both document it."""
        if self.schema is None:
            return {"type": Conversation.AnswerFormat.JSON.value}
        return {
            "type": Conversation.AnswerFormat.SCHEMA.value,
            "json_schema": {"name": self.name, "schema": self.schema, "strict": True},
        }


def answer_format_of(conversation: Conversation) -> AnswerFormat | None:
    """The conversation's format, or None for text (nothing is sent: text is the default)."""
    kind = conversation.answer_format
    if kind == Conversation.AnswerFormat.SCHEMA and conversation.answer_schema is not None:
        return AnswerFormat(kind, conversation.answer_schema_name, conversation.answer_schema)
    if kind in (Conversation.AnswerFormat.JSON, Conversation.AnswerFormat.SCHEMA):
        return AnswerFormat(Conversation.AnswerFormat.JSON.value)
    return None


def json_outcome(outcome: Outcome, answer_format: AnswerFormat) -> Outcome:
    """A finished answer asked for as JSON: pretty-printed and highlighted when it parses
    (through the markdown renderer, so the same sanitizer and highlighter apply), checked
    against the schema when there is one; kept as markdown, and marked, when it does not."""
    try:
        value = json.loads(_unfenced(outcome.text))
    except ValueError:
        return dataclasses.replace(outcome, notice=_joined(outcome.notice, NOT_JSON))
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    html = render_markdown(f"```json\n{pretty}\n```")
    # The block is the whole answer: its head's first closing tag ends the button row.
    html = html.replace("</div>", _DOWNLOAD_BUTTON + "</div>", 1)
    mark = ""
    if answer_format.schema is not None:
        mark = schema_mark(value, answer_format)
    return dataclasses.replace(outcome, html=html, notice=_joined(outcome.notice, mark))


# A whole answer in one fenced block: what a server that ignores `response_format` tends to
# send (llama.cpp without a grammar, a model that formats JSON for people anyway).
_FENCED = re.compile(
    r"\A\s*(```|~~~)[ \t]*(?:json)?[ \t]*\n(.*?)\n?\1\s*\Z", re.DOTALL | re.IGNORECASE
)


def _unfenced(text: str) -> str:
    match = _FENCED.match(text)
    return match.group(2) if match else text


def schema_mark(value: Any, answer_format: AnswerFormat) -> str:
    """Whether `value` matches the schema, in a sentence naming the first error and where."""
    error = best_match(Draft202012Validator(answer_format.schema).iter_errors(value))
    name = answer_format.name
    if error is None:
        return f"Matches the schema “{name}”."
    return f"Does not match the schema “{name}”: {error.message} (at {error.json_path})."


def _joined(notice: str, sentence: str) -> str:
    return " ".join(part for part in (notice, sentence) if part)
