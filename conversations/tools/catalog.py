"""The tools there are and which of them a conversation's answers are given.

Each tool has a key the conversation's settings store ("builtin:datetime",
"mcp:<server>/<tool>") and a function name the model sees, which follows Mistral's rule
(`^[a-zA-Z0-9_-]{1,64}$`): an MCP tool is named `<server>_<tool>` with anything else
turned into `_`. Calls are run here too (`tool_run`), bounded in time and size.
"""

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from conversations.tools import builtin, mcp_servers
from conversations.tools.context import Context, ToolFailed

logger = logging.getLogger(__name__)

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass(frozen=True, slots=True)
class Tool:
    key: str  # what a conversation's `tools` setting stores
    name: str  # the function name the model is given
    title: str  # for people: the tool's own name
    description: str
    parameters: dict[str, Any] = field(hash=False)
    source: str  # "Built in", or the MCP server's name
    approval: bool = False  # the user approves each call before it runs

    def definition(self) -> dict[str, Any]:
        """The entry of a request's `tools`."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def tool_label(key: str, name: str) -> tuple[str, str]:
    """A stored call's tool for people, from its key alone (no listing): its title and
    where it comes from."""
    for tool in BUILTIN:
        if tool.key == key:
            return tool.title, tool.source
    if key.startswith("mcp:"):
        server, _, title = key[4:].partition("/")
        return title, server
    return name, "Unknown tool"


def function_name(server: str, tool: str) -> str:
    return _NAME_UNSAFE.sub("_", f"{server}_{tool}")[:64]


async def catalog() -> tuple[list[Tool], list[str]]:
    """Every tool this site offers, and what went wrong listing them (an MCP server that
    is down): the built-in tools, then each configured MCP server's, in order."""
    tools = list(BUILTIN)
    problems = []
    listings = await asyncio.gather(
        *(mcp_servers.listed_tools(server) for server in mcp_servers.configured())
    )
    for server, listing in zip(mcp_servers.configured(), listings, strict=True):
        if isinstance(listing, str):
            problems.append(f"{server.name}: {listing}")
            continue
        for listed in listing:
            tools.append(
                Tool(
                    key=f"mcp:{server.name}/{listed.name}",
                    name=function_name(server.name, listed.name),
                    title=listed.name,
                    description=(listed.description or "")[:1024],
                    parameters=listed.parameters,
                    source=server.name,
                    approval=server.needs_approval(listed.name),
                )
            )
    return tools, problems


async def tools_for(keys: list[str], *, has_documents: bool) -> list[Tool]:
    """The tools of a conversation whose settings switched on `keys`; the documents search
    only when the path being answered has documents."""
    if not keys:
        return []
    wanted = set(keys)
    if not has_documents:
        wanted.discard(builtin.DOCUMENTS)
    if not any(key.startswith("mcp:") for key in wanted):
        return [tool for tool in BUILTIN if tool.key in wanted]
    tools, _ = await catalog()
    chosen, names = [], set()
    for tool in tools:
        if tool.key in wanted and tool.name not in names:  # a name the model can tell apart
            names.add(tool.name)
            chosen.append(tool)
    return chosen


async def tool_run(tool: Tool, arguments: str, context: Context) -> str:
    """Run one call with the model's `arguments` (a JSON object's text); its result as
    text, cut to CHAT_TOOL_RESULT_CHARS. Raises ToolFailed, or TimeoutError past
    CHAT_TOOL_TIMEOUT."""
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError as err:
        raise ToolFailed(f"The arguments are not valid JSON ({err}).") from None
    if not isinstance(parsed, dict):
        raise ToolFailed("The arguments must be a JSON object.")
    async with asyncio.timeout(settings.CHAT_TOOL_TIMEOUT):
        if tool.key.startswith("builtin:"):
            result = await builtin.run(tool.key, parsed, context)
        else:
            server, _, name = tool.key[4:].partition("/")
            result = await mcp_servers.call(server, name, parsed)
    return capped(result)


def capped(text: str) -> str:
    limit = settings.CHAT_TOOL_RESULT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n\n[The result was cut at {limit:,} characters.]"


BUILTIN: tuple[Tool, ...] = (
    Tool(
        key=builtin.DATETIME,
        name="current_datetime",
        title="Date and time",
        description=(
            "The current date, time and weekday. Use it for anything that depends on today or now."
        ),
        parameters={
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "description": "An IANA time zone such as Europe/Paris; UTC when not given.",
                }
            },
        },
        source="Built in",
    ),
    Tool(
        key=builtin.DOCUMENTS,
        name="search_documents",
        title="Search this conversation's documents",
        description=(
            "Search the documents attached to this conversation and return the passages "
            "that best match the query, each with its document and page. Use it before "
            "answering a question about the documents."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, in words."},
            },
            "required": ["query"],
        },
        source="Built in",
    ),
)
