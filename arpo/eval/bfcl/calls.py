"""Which call format a model gets, and decoding of function-calling output.

A model whose chat template renders `tools=` is prompted the way BFCL prompts function-calling
models: the function docs as JSON-schema tools through its own template; its calls are decoded
here from the formats such templates ask for: Hermes/Qwen `<tool_call>{"name", "arguments"}
</tool_call>` blocks, or a bare JSON list (or object) of `{"name", "arguments"}` as xLAM writes.
A model whose template ignores tools gets BFCL's prompt style (function docs in the system prompt,
calls written `[f(a=1)]`), decoded by BFCL's own prompting decoder in the worker.

A decoded output is `{"calls": [{"name", "arguments"}]}` or `{"error": reason}`; function names
are mapped back from the schema-safe names (dots become underscores) to BFCL's.
"""

from __future__ import annotations

import json
import re

from arpo.errors import ArpoError

FC, PROMPT = "fc", "prompt"
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_function_xyz",
        "description": "probe",
        "parameters": {"type": "object", "properties": {}},
    },
}


def call_style(tokenizer, model: str) -> str:
    """FC when the chat template renders a tool schema, else BFCL's prompt style. A tokenizer with
    no chat template is an error: BFCL's prompts are chat conversations."""
    if not getattr(tokenizer, "chat_template", None):
        raise ArpoError(f"{model}: the tokenizer has no chat template; BFCL needs a chat model")
    messages = [{"role": "user", "content": "hi"}]
    try:
        text = tokenizer.apply_chat_template(messages, tools=[_PROBE_TOOL], tokenize=False)
    except Exception:  # a template that rejects tools= cannot carry them
        return PROMPT
    return FC if "probe_function_xyz" in text else PROMPT


def schema_name(name: str) -> str:
    """The name a JSON-schema tool carries (BFCL replaces dots, which tool names may not hold)."""
    return name.replace(".", "_")


def _after_thinking(text: str) -> str:
    return text.rsplit("</think>", 1)[-1].strip()


def _as_call(item, names: dict[str, str]) -> dict:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ValueError(f"a call must be an object with a name and arguments, got {json.dumps(item)[:200]}")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            raise ValueError(f"arguments of {item['name']} are not JSON ({e})") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments of {item['name']} are not a JSON object")
    return {"name": names.get(item["name"], item["name"]), "arguments": arguments}


def _parse(blob: str):
    try:
        return json.loads(blob)
    except json.JSONDecodeError as e:
        raise ValueError(f"tool call is not JSON ({e}): {blob[:200]}") from None


def decode_fc(text: str, names: dict[str, str]) -> dict:
    """Calls from a function-calling model's output; `names` maps schema names back."""
    body = _after_thinking(text)
    try:
        blocks = TOOL_CALL.findall(body)
        if blocks:
            items = [_parse(b) for b in blocks]
        else:
            bare = FENCE.sub("", body).strip()
            if not bare.startswith(("[", "{")):
                return {"error": "no function call in the output"}
            parsed = _parse(bare)
            items = parsed if isinstance(parsed, list) else [parsed]
        return {"calls": [_as_call(item, names) for item in items]}
    except ValueError as e:
        return {"error": str(e)}


def assistant_message(text: str, decoded: dict, names: dict[str, str]) -> dict:
    """The model's turn as chat history: its calls as `tool_calls` for its template to render."""
    if "calls" not in decoded:
        return {"role": "assistant", "content": text}
    back = {v: k for k, v in names.items()}
    calls = [
        {
            "type": "function",
            "function": {"name": back.get(c["name"], c["name"]), "arguments": c["arguments"]},
        }
        for c in decoded["calls"]
    ]
    return {"role": "assistant", "content": "", "tool_calls": calls}
