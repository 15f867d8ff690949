"""The tools an agent calls on a set of examples: a registry, its call parser and an executor."""

from __future__ import annotations

import dataclasses
from typing import Any

from arpo.config.tools import ToolsConfig
from arpo.data import Example
from arpo.tools.executor import ToolExecutor
from arpo.tools.parsers import make_parser
from arpo.tools.registry import build_tools


def tools_for(tools: ToolsConfig, examples: list[Example]) -> ToolsConfig:
    """A generated search task ships its own corpus: point an unconfigured BM25 search tool at it."""
    corpus = examples[0].extra.get("search_corpus") if examples else None
    if corpus and "search" in tools.enabled and not tools.search.corpus:
        search = dataclasses.replace(tools.search, backend="bm25", corpus=corpus)
        return dataclasses.replace(tools, search=search)
    return tools


def agent_tools(tools: ToolsConfig, examples: list[Example]) -> tuple[Any, ToolExecutor]:
    """The tool-call parser and executor an agent on `examples` uses."""
    registry = build_tools(tools_for(tools, examples))
    return make_parser(tools.format, registry), ToolExecutor(registry, tools.workers, tools.deadline_s)
