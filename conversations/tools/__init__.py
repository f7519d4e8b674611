"""Tools an answer's model may call: the catalogue (built-in tools and the MCP servers'),
and running one call. No rows and no sockets: live/tool_steps.py stores and streams."""
