"""Tools the policy calls during rollout, and the formats it calls them in.

- `registry.build_tools(cfg) -> ToolRegistry`: the enabled tools (built-ins, `custom`: your own
  functions and classes, `mcp`: MCP servers' tools) and their OpenAI schemas (`schema`).
- `parsers.make_parser(format, registry, tokenizer)`: ARPO tags or Hermes/Qwen `<tool_call>` JSON;
  `prompting.render_prompt`: the tools shown in the prompt through the chat template.
- `budget.ResultBudget`: token budgets on each result and on a trajectory's results.
- `executor.ToolExecutor(registry, workers, deadline_s)`: `submit(call) -> Future[ToolResult]`;
  every call ends by its tool's `deadline_s` (or the executor's), a late one as a timeout. A tool
  raises `base.ToolError` for a failure the model should read, `base.ToolTimeout` for a timeout.
- `python_tool` / `sandbox`: model-written code in a confined, short-lived process tree.
- `search_tool`: BM25 over a corpus, replay of recorded results, or a user's HTTP API.

Kept import-free so that `arpo.config.tools` stays cheap to load.
"""
