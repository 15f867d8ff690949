"""The tools an agent calls on a set of examples: an executor over their registry (started before
the model loads), and the call parser of the tool format (which needs the tokenizer)."""

from __future__ import annotations

import dataclasses

from arpo import output
from arpo.config.tools import ToolsConfig
from arpo.data import Example
from arpo.errors import ConfigError
from arpo.tools.executor import ToolExecutor
from arpo.tools.parsers import make_parser
from arpo.tools.prompting import prompt_warnings
from arpo.tools.registry import build_tools


def tools_for(tools: ToolsConfig, examples: list[Example]) -> ToolsConfig:
    """A generated search task ships its own corpus: point an unconfigured BM25 search tool at it."""
    corpus = examples[0].extra.get("search_corpus") if examples else None
    if corpus and "search" in tools.enabled and not tools.search.corpus:
        search = dataclasses.replace(tools.search, backend="bm25", corpus=corpus)
        return dataclasses.replace(tools, search=search)
    return tools


def agent_executor(tools: ToolsConfig, examples: list[Example]) -> ToolExecutor:
    """The executor of the tools an agent on `examples` uses (MCP servers start here)."""
    if tools.result_max_tokens < 0:
        raise ConfigError(
            f"tools.result_max_tokens must be >= 0 (0: no limit), got {tools.result_max_tokens}"
        )
    return ToolExecutor(build_tools(tools_for(tools, examples)), tools.workers, tools.deadline_s)


def agent_parser(tools: ToolsConfig, executor: ToolExecutor, tokenizer, examples: list[Example]):
    """The tool-call parser of `tools.format` (under hermes, the chat template shapes tool
    messages), after warning about prompts that show tools that are not enabled or never mention
    enabled ones."""
    parser = make_parser(tools.format, executor.registry, tokenizer)
    if examples:
        for warning in prompt_warnings(examples[0].prompt_messages, executor.registry, tools.format):
            output.say(f"arpo: warning: {warning}")
    return parser
