"""What the model is shown of its tools, rendered by the tokenizer's own chat template.

- ``hermes``: the prompt is `apply_chat_template(messages, tools=schemas)`. A template that renders
  no tools (it ignores `tools=`) gets the schemas in its system prompt in the Hermes convention: a
  `<tools>` list of JSON schemas and the `<tool_call>` instruction. Results go back as the
  template's tool message (`HermesParser` reads the wrapper from the template).
- ``tags``: the system prompt documents each enabled tool it does not already mention, as its tag
  (`<name>argument</name>`) and description, from the same registry.

`prompt_warnings` names the mismatches between a prompt and the enabled tools.
"""

from __future__ import annotations

import json

from arpo.tools.base import main_argument
from arpo.tools.registry import ToolRegistry

ARPO_TAGS = ("python", "search")  # tags the built-in prompts use, whether or not enabled

HERMES_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{schemas}\n"
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": '
    "<args-json-object>}}\n</tool_call>\nEach result comes back within <tool_response></tool_response> "
    "XML tags."
)
TAG_INTRO = "You can call these tools; each result comes back between <result> and </result>:"


def _render(tokenizer, messages: list[dict], **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)


def _with_system(messages: list[dict], extra: str) -> list[dict]:
    """`messages` whose system prompt ends with `extra` (a system message is added if none)."""
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{extra}".strip()}
        return [first, *messages[1:]]
    return [{"role": "system", "content": extra}, *messages]


def renders_tools(tokenizer) -> bool:
    """Whether the chat template shows `tools=` at all (SmolLM2's, for one, does not)."""
    probe = [{"role": "user", "content": "hi"}]
    schema = {"type": "function", "function": {"name": "arpo_probe_tool", "parameters": {"type": "object"}}}
    try:
        return "arpo_probe_tool" in _render(tokenizer, probe, tools=[schema])
    except Exception:  # a template that rejects the argument renders no tools either
        return False


def hermes_system(schemas: list[dict]) -> str:
    return HERMES_TOOLS.format(schemas="\n".join(json.dumps(s, ensure_ascii=False) for s in schemas))


def tag_usage(tool) -> str:
    """`<name>argument</name>: description`; several arguments are written as one JSON object."""
    fn = tool.schema()["function"]
    properties = fn["parameters"].get("properties", {})
    body = main_argument(tool) if len(properties) <= 1 else json.dumps({p: "..." for p in properties})
    return f"<{tool.name}>{body}</{tool.name}>: {fn.get('description') or tool.name}"


def _mentioned(messages: list[dict], name: str) -> bool:
    return any(f"<{name}>" in str(m.get("content") or "") for m in messages)


def tags_messages(messages: list[dict], registry: ToolRegistry) -> list[dict]:
    undocumented = [registry.get(n) for n in registry.names if not _mentioned(messages, n)]
    if not undocumented:
        return messages
    return _with_system(messages, "\n".join([TAG_INTRO, *(tag_usage(t) for t in undocumented)]))


def render_prompt(tokenizer, messages: list[dict], registry: ToolRegistry, fmt: str) -> str:
    """The prompt text of `messages` under tool format `fmt`, ending with the assistant header."""
    if fmt == "tags":
        return _render(tokenizer, tags_messages(messages, registry))
    schemas = registry.schemas()
    if not schemas:
        return _render(tokenizer, messages)
    if renders_tools(tokenizer):
        return _render(tokenizer, messages, tools=schemas)
    return _render(tokenizer, _with_system(messages, hermes_system(schemas)))


def prompt_warnings(messages: list[dict], registry: ToolRegistry, fmt: str) -> list[str]:
    """A prompt that shows a tool that is not enabled, or, under tags, never mentions an enabled one."""
    shown = [n for n in dict.fromkeys([*ARPO_TAGS, *registry.names]) if _mentioned(messages, n)]
    if fmt == "hermes":
        return [
            f"the prompt shows <{n}> tags, which tools.format=hermes does not run (it reads <tool_call> JSON)"
            for n in shown
        ]
    out = [f"the prompt advertises <{n}> but tool {n!r} is not enabled" for n in shown if n not in registry]
    out += [
        f"enabled tool {n!r} is never mentioned in the prompt; its tag is documented in the system prompt"
        for n in registry.names
        if n not in shown
    ]
    return out
