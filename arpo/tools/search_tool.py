"""The `search` tool: one query in, the top snippets out as `Page i: ...` lines (ARPO's format)."""

from __future__ import annotations

from typing import Any

from arpo.config.tools import SearchToolConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolError, ToolResult, function_schema
from arpo.tools.search_bm25 import Bm25Backend
from arpo.tools.search_http import HttpBackend
from arpo.tools.search_replay import ReplayBackend


def make_backend(cfg: SearchToolConfig):
    if cfg.backend == "bm25":
        return Bm25Backend(cfg.corpus)
    if cfg.backend == "replay":
        return ReplayBackend(cfg.cache)
    if cfg.backend == "http":
        return HttpBackend(cfg)
    raise ConfigError(
        f"tools.search.backend={cfg.backend!r} is not valid; choose one of 'bm25', 'replay', 'http'"
    )


def format_pages(snippets: list[str], top_k: int, max_chars: int) -> str:
    text = "\n".join(f"Page {i}: {s}" for i, s in enumerate(snippets[:top_k], 1))
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " ..."


class SearchTool:
    name = "search"

    def __init__(self, cfg: SearchToolConfig, backend=None):
        if cfg.top_k < 1 or cfg.max_chars < 1:
            raise ConfigError("tools.search.top_k and tools.search.max_chars must be positive")
        self.cfg = cfg
        self.backend = backend if backend is not None else make_backend(cfg)
        if isinstance(self.backend, HttpBackend):  # its own watchdog answers first; this is the backstop
            self.deadline_s = cfg.http_timeout_s + 5.0

    def schema(self) -> dict:
        return function_schema(
            self.name,
            "Search for information and return the most relevant snippets, one per line as 'Page i: ...'.",
            "query",
            "The search query.",
        )

    def run(self, arguments: dict[str, Any]) -> ToolResult:
        query = arguments.get("query")
        if not isinstance(query, str):
            raise ToolError("search: argument 'query' must be a string")
        query = " ".join(query.split())
        if not query:
            raise ToolError("search: empty query")
        snippets = self.backend.search(query, self.cfg.top_k)
        text = format_pages(snippets, self.cfg.top_k, self.cfg.max_chars) if snippets else "No results found."
        return ToolResult(text=text)
