"""A small MCP server for the tests, written with the official SDK: run it over stdio
(`python tests/mcp_tools_server.py`) or streamable HTTP (`... http PORT`). Its tools are
what the tests need: one that answers, one that fails, one that takes its time."""

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("test-tools")


@server.tool(description="Add two whole numbers and return their sum.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Look up the weather of a city (always the same answer).")
def weather(city: str) -> str:
    return f"Sunny and 21 °C in {city}."


@server.tool(description="A tool that always fails.")
def broken(reason: str = "") -> str:
    raise RuntimeError(f"the weather station is offline {reason}".strip())


@server.tool(description="Wait some seconds, then say so.")
async def slow(seconds: float = 30) -> str:
    await asyncio.sleep(seconds)
    return f"waited {seconds} s"


@server.tool(description="Return a long text of the given number of characters.")
def long_text(size: int = 100_000) -> str:
    return "<b>x</b>" * (size // 8)


@server.tool(description="The names of this server's environment variables.")
def environment() -> str:
    return " ".join(sorted(os.environ))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
