"""MCP servers the operator configured (CHAT_MCP_CONFIG), reached through the official
`mcp` SDK: stdio commands and streamable-HTTP URLs.

Each server gets one connection per event loop, opened at its first use and kept: an
owner task holds the SDK's client open (its context must be left by the task that entered
it) and callers share it. A connection that breaks is dropped and the next call opens a
new one. Calls carry the model's arguments only: no user's secret or identity goes to a
server. Listings are kept for CHAT_MCP_LIST_SECONDS.
"""

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conversations.tools.context import ToolFailed

logger = logging.getLogger(__name__)

# How long opening a connection (a command starting, a URL answering) may take.
CONNECT_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Server:
    """One configured server: `command` and `args` (stdio) or `url` (streamable HTTP)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str = ""
    approval: bool | frozenset[str] = False  # True: every tool; else the tools named

    def needs_approval(self, tool: str) -> bool:
        return self.approval is True or (
            isinstance(self.approval, frozenset) and tool in self.approval
        )

    def target(self) -> StdioServerParameters | str:
        if self.url:
            return self.url
        return StdioServerParameters(
            command=self.command, args=list(self.args), env=dict(self.env) or None
        )


@dataclass(frozen=True, slots=True)
class Listed:
    name: str
    description: str
    parameters: dict[str, Any] = field(hash=False)


def configured() -> list[Server]:
    """The servers of the settings, in order (chatsite/settings.py reads and checks them)."""
    return [Server(**entry) for entry in settings.CHAT_MCP_SERVERS]


class _Connection:
    """One server's client on one event loop, held open by its owner task."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._ready: asyncio.Future | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.listing: tuple[float, list[Listed]] | None = None

    async def client(self) -> Client:
        if self._task is None or self._task.done():
            self._ready = asyncio.get_running_loop().create_future()
            self._closing = asyncio.Event()
            self._task = asyncio.create_task(self._hold(self._ready, self._closing))
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                return await asyncio.shield(self._ready)
        except TimeoutError:
            self.drop()
            raise ToolFailed(f"The tool server {self.server.name} did not start in time.") from None

    async def _hold(self, ready: asyncio.Future, closing: asyncio.Event) -> None:
        try:
            async with Client(self.server.target(), mode="legacy") as client:
                ready.set_result(client)
                await closing.wait()
        except BaseException as err:  # noqa: BLE001 — any failure of the SDK's transport
            if not ready.done():
                logger.warning("MCP server %s could not be reached: %r", self.server.name, err)
                ready.set_exception(
                    ToolFailed(f"The tool server {self.server.name} could not be reached.")
                )
            if isinstance(err, asyncio.CancelledError):
                raise

    def drop(self) -> None:
        """Close the connection; the next call opens a new one. One still opening is
        cancelled: it is not waiting to be told to close yet."""
        self._closing.set()
        opening = self._ready is not None and not self._ready.done()
        if opening and self._task is not None:
            self._task.cancel()
        self._task = None

    @property
    def task(self) -> asyncio.Task | None:
        return self._task


_connections: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Connection]]" = (
    weakref.WeakKeyDictionary()
)


def _connection(server: Server) -> _Connection:
    pool = _connections.setdefault(asyncio.get_running_loop(), {})
    known = pool.get(server.name)
    if known is None or known.server != server:
        if known is not None:
            known.drop()
        known = pool[server.name] = _Connection(server)
    return known


async def listed_tools(server: Server) -> list[Listed] | str:
    """The server's tools, or what went wrong listing them."""
    connection = _connection(server)
    if (
        connection.listing
        and time.monotonic() - connection.listing[0] < settings.CHAT_MCP_LIST_SECONDS
    ):
        return connection.listing[1]
    try:
        client = await connection.client()
        async with asyncio.timeout(CONNECT_SECONDS):
            result = await client.list_tools()
    except ToolFailed as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 — the SDK raises many kinds
        connection.drop()
        logger.warning("Listing the tools of MCP server %s failed: %r", server.name, err)
        return "its tools could not be listed"
    listed = [
        Listed(tool.name, tool.description or "", dict(tool.input_schema or {"type": "object"}))
        for tool in result.tools
    ]
    connection.listing = (time.monotonic(), listed)
    return listed


async def call(server_name: str, tool: str, arguments: dict[str, Any]) -> str:
    """Call one tool; its text content joined, or ToolFailed with what the server said."""
    server = next((s for s in configured() if s.name == server_name), None)
    if server is None:
        raise ToolFailed(f"The tool server {server_name} is no longer configured.")
    connection = _connection(server)
    client = await connection.client()
    try:
        result = await client.call_tool(tool, arguments)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # noqa: BLE001 — a broken transport, a protocol error
        connection.drop()
        logger.warning("MCP call %s/%s failed: %r", server_name, tool, err)
        raise ToolFailed(f"The tool server {server_name} failed: {type(err).__name__}.") from None
    text = "\n\n".join(
        getattr(block, "text", None) or f"[{getattr(block, 'type', 'content')} left out]"
        for block in result.content
    )
    if result.is_error:
        raise ToolFailed(text or "The tool reported an error.")
    return text


async def connections_close() -> None:
    """Close this loop's connections (a process shutting down): stdio servers end with
    them."""
    pool = _connections.pop(asyncio.get_running_loop(), {})
    tasks = [c.task for c in pool.values() if c.task is not None and not c.task.done()]
    for connection in pool.values():
        connection.drop()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
