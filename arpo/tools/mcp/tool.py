"""MCP servers' tools as arpo tools: started and listed at start-up, called through the executor.

`connect_servers` starts every configured server, checks each allowed tool's schema and returns
one `McpTool` per allowed tool; a server that does not start, an allow-list naming a tool the
server lacks, or an invalid schema is a one-line `ConfigError` naming the server.
"""

from __future__ import annotations

from typing import Any

from arpo.config.tools import McpServerConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolError, ToolResult
from arpo.tools.mcp.connection import CallTimeout, McpConnection, McpUnavailable
from arpo.tools.mcp.content import result_text
from arpo.tools.schema import normalize


class McpTool:
    def __init__(self, connection: McpConnection, schema: dict):
        self.connection = connection
        self.name = schema["function"]["name"]
        self._schema = schema

    def schema(self) -> dict:
        return self._schema

    def run(self, arguments: dict[str, Any]) -> ToolResult:
        server = self.connection.cfg.name
        try:
            result = self.connection.call(self.name, arguments)
        except CallTimeout as e:
            msg = f"{self.name} (MCP server {server!r}): {e}"
            return ToolResult(text=f"Error: {msg}", error=msg, timed_out=True)
        except McpUnavailable as e:
            raise ToolError(f"{self.name}: MCP server {server!r} is unavailable: {e}") from None
        except Exception as e:  # a protocol error, an invalid answer, a dropped connection
            raise ToolError(f"{self.name} (MCP server {server!r}): {type(e).__name__}: {e}") from None
        text = result_text(result)
        if result.is_error:
            raise ToolError(f"{self.name}: {text}")
        return ToolResult(text=text)

    def close(self) -> None:
        self.connection.close()


def _check(cfg: McpServerConfig, where: str) -> None:
    if not cfg.name:
        raise ConfigError(f"{where}.name is empty: name each MCP server")
    if bool(cfg.command) == bool(cfg.url):
        raise ConfigError(f"{where} ({cfg.name}): give either command (stdio) or url (streamable HTTP)")
    if cfg.timeout_s <= 0 or cfg.startup_timeout_s <= 0:
        raise ConfigError(f"{where} ({cfg.name}): timeout_s and startup_timeout_s must be positive")


def _server_tools(cfg: McpServerConfig, where: str) -> list[McpTool]:
    connection = McpConnection(cfg)
    try:
        try:
            listed = {t.name: t for t in connection.start()}
        except McpUnavailable as e:
            raise ConfigError(f"MCP server {cfg.name!r} did not start: {e}") from None
        missing = [n for n in cfg.tools if n not in listed]
        if missing:
            raise ConfigError(
                f"MCP server {cfg.name!r} has no tool(s) {missing}; it lists {sorted(listed) or 'none'}"
            )
        chosen = [listed[n] for n in (cfg.tools or listed)]
        schemas = [
            normalize(
                {"name": t.name, "description": t.description or "", "parameters": t.input_schema},
                f"MCP server {cfg.name!r}",
            )
            for t in chosen
        ]
    except BaseException:
        connection.close()
        raise
    return [McpTool(connection, s) for s in schemas]


def connect_servers(servers: list[McpServerConfig]) -> list[McpTool]:
    """The allowed tools of every server, each server started once; all stopped on failure."""
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ConfigError(f"tools.mcp.servers: two servers share a name in {names}")
    tools: list[McpTool] = []
    try:
        for i, cfg in enumerate(servers):
            where = f"tools.mcp.servers[{i}]"
            _check(cfg, where)
            tools += _server_tools(cfg, where)
    except BaseException:
        for tool in tools:
            tool.close()
        raise
    return tools
