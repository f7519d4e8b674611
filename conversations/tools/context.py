"""What a tool call may reach, and how it fails: shared by the built-in tools and the
MCP servers' (kept apart so neither imports the catalogue)."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Context:
    """What a call may reach: the documents of the conversation's path being answered,
    and nothing of any other conversation or user."""

    conversation_id: int
    user_id: int
    document_ids: tuple[int, ...] = ()


class ToolFailed(Exception):
    """A call that could not give a result; its message goes back to the model and the
    reader as the result."""
