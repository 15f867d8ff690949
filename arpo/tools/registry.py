"""The enabled tools by name, with their OpenAI function-calling schemas: the built-ins named in
`tools.enabled`, every tool under `tools.custom`, and the allowed tools of `tools.mcp.servers`."""

from __future__ import annotations

from arpo.config.tools import ToolsConfig
from arpo.errors import ConfigError
from arpo.tools.base import Tool
from arpo.tools.custom import CustomTool
from arpo.tools.python_tool import PythonTool
from arpo.tools.search_tool import SearchTool

BUILTIN = {"python": lambda cfg: PythonTool(cfg.python), "search": lambda cfg: SearchTool(cfg.search)}


class ToolRegistry:
    def __init__(self, tools: list[Tool]):
        self._tools = {t.name: t for t in tools}
        if len(self._tools) != len(tools):
            raise ConfigError("tools: two tools share a name")

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def schemas(self) -> list[dict]:
        """What a chat template's `tools=` argument takes."""
        return [t.schema() for t in self._tools.values()]

    def close(self) -> None:
        """Stop what the tools hold open (MCP server processes and their threads)."""
        _close_all(list(self._tools.values()))


def _unique(tools: list[Tool]) -> None:
    names = [t.name for t in tools]
    shared = sorted({n for n in names if names.count(n) > 1})
    if shared:
        raise ConfigError(f"tools: several tools are named {shared}; rename the custom or MCP ones")


def _close_all(tools: list[Tool]) -> None:
    for tool in tools:
        close = getattr(tool, "close", None)
        if close is not None:
            close()


def build_tools(cfg: ToolsConfig) -> ToolRegistry:
    custom = [CustomTool(c, f"tools.custom[{i}]") for i, c in enumerate(cfg.custom)]
    known = {*BUILTIN, *(t.name for t in custom)}
    if not cfg.mcp.servers and any(n not in known for n in cfg.enabled):
        _unknown(cfg.enabled, sorted(known))
    tools = [BUILTIN[n](cfg) for n in dict.fromkeys(cfg.enabled) if n in BUILTIN] + custom
    _unique(tools)
    if cfg.mcp.servers:
        from arpo.tools.mcp import connect_servers  # the SDK loads only for runs that use it

        tools += connect_servers(cfg.mcp.servers)
        try:
            _unique(tools)
            _unknown(cfg.enabled, [t.name for t in tools])
        except ConfigError:
            _close_all(tools)
            raise
    return ToolRegistry(tools)


def _unknown(enabled: list[str], available: list[str]) -> None:
    unknown = [n for n in enabled if n not in available and n not in BUILTIN]
    if unknown:
        raise ConfigError(
            f"tools.enabled: unknown tool(s) {unknown}; available: {available} "
            f"(declare your own under tools.custom or tools.mcp.servers)"
        )
