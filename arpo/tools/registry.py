"""The enabled tools by name, with their OpenAI function-calling schemas."""

from __future__ import annotations

from arpo.config.tools import ToolsConfig
from arpo.errors import ConfigError
from arpo.tools.base import Tool
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


def build_tools(cfg: ToolsConfig) -> ToolRegistry:
    unknown = [n for n in cfg.enabled if n not in BUILTIN]
    if unknown:
        raise ConfigError(f"tools.enabled: unknown tool(s) {unknown}; available: {sorted(BUILTIN)}")
    return ToolRegistry([BUILTIN[name](cfg) for name in dict.fromkeys(cfg.enabled)])
