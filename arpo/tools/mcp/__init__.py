"""MCP client tools: servers named in `tools.mcp.servers`, reached with the official `mcp` SDK."""

from arpo.tools.mcp.tool import McpTool, connect_servers

__all__ = ["McpTool", "connect_servers"]
