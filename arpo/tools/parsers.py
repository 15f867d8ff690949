"""Tool-call formats behind one interface, used by the rollout after each pause.

- ``tags`` (ARPO): ``<python>code</python>`` / ``<search>query</search>``; the result is inserted
  as ``\\n<result>\\n...\\n</result>\\n`` and the final answer is ``<answer>...</answer>``.
  A tool taking several arguments is called with a JSON object: ``<kv_get>{"key": "a"}</kv_get>``.
- ``hermes`` (Qwen / Hermes): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; the
  result comes back as the tokenizer's chat template renders a tool message after an assistant
  turn (Qwen's: a user turn holding ``<tool_response>``), followed by the next assistant header.
  A template whose tool message lacks ``<tool_response>`` gets it around the result.

`parse` reads the text generated since the last tool result and returns the call it ends with;
a malformed call yields a `ToolCall` whose `error` says what is wrong (the executor turns it into
an error result for the model), never an exception.
"""

from __future__ import annotations

import json
import re
from typing import Protocol

from arpo.errors import ConfigError
from arpo.tools.base import ToolCall, main_argument
from arpo.tools.prompting import ARPO_TAGS  # always recognised: a disabled tool gets an error, not silence
from arpo.tools.registry import ToolRegistry

THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _without_think(text: str) -> str:
    return THINK.sub("", text)


def _body(text: str) -> str:
    return text.strip("\n")  # the wrapper adds its own line breaks


def _last_answer(text: str) -> str | None:
    answers = ANSWER.findall(_without_think(text))
    return answers[-1].strip() if answers else None


class ToolCallParser(Protocol):
    def stop_strings(self) -> list[str]: ...

    def parse(self, text: str) -> ToolCall | None: ...

    def format_result(self, text: str) -> str: ...

    def final_answer(self, text: str) -> str | None: ...


def _json_arguments(name: str, content: str, raw: str) -> ToolCall:
    try:
        arguments = json.loads(content)
    except json.JSONDecodeError as e:
        return ToolCall(name, raw=raw, error=f"<{name}> takes a JSON object of arguments: {e.msg}")
    if not isinstance(arguments, dict):
        return ToolCall(name, raw=raw, error=f"<{name}> takes a JSON object of arguments")
    return ToolCall(name, arguments, raw)


class TagParser:
    fmt = "tags"

    def __init__(self, registry: ToolRegistry):
        self.registry = registry
        self.tags = list(dict.fromkeys([*ARPO_TAGS, *registry.names]))

    def stop_strings(self) -> list[str]:
        return [f"</{tag}>" for tag in self.tags]

    def parse(self, text: str) -> ToolCall | None:
        body = text.rstrip()
        closed = next((t for t in self.tags if body.endswith(f"</{t}>")), None)
        if closed is None:
            return self._unclosed(text)
        close_at = len(body) - len(f"</{closed}>")
        open_at = body.rfind(f"<{closed}>", 0, close_at)
        if open_at < 0:
            return ToolCall(closed, raw=body[-200:], error=f"</{closed}> without an opening <{closed}>")
        raw = body[open_at:]
        content = body[open_at + len(closed) + 2 : close_at]
        tool = self.registry.get(closed)
        if tool is None:
            return ToolCall(closed, raw=raw, error=f"tool {closed!r} is not enabled; use {self._usage()}")
        argument = main_argument(tool)
        if not content.strip():
            return ToolCall(closed, {argument: content}, raw, error=f"empty <{closed}> call")
        if len(tool.schema()["function"]["parameters"].get("properties", {})) > 1:
            return _json_arguments(closed, content, raw)
        return ToolCall(closed, {argument: content.strip("\n")}, raw)

    def _unclosed(self, text: str) -> ToolCall | None:
        """A call opened after the last closing tag of its kind (generation ended inside it)."""
        visible = _without_think(text)
        for tag in self.tags:
            open_at = visible.rfind(f"<{tag}>")
            if open_at >= 0 and visible.find(f"</{tag}>", open_at) < 0:
                return ToolCall(tag, raw=visible[open_at:], error=f"unclosed <{tag}> tag")
        return None

    def _usage(self) -> str:
        return " or ".join(f"<{n}>...</{n}>" for n in self.registry.names) or "no tools"

    def format_result(self, text: str) -> str:
        return f"\n<result>\n{_body(text)}\n</result>\n"

    def final_answer(self, text: str) -> str | None:
        return _last_answer(text)


def template_result_wrapper(tokenizer) -> tuple[str, str]:
    """(before, after) a tool result's text, as the chat template renders a tool message right
    after an assistant turn and then opens the next assistant turn."""
    call, result = "ARPO_CALL_SLOT", "ARPO_RESULT_SLOT"
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": call},
        {"role": "tool", "content": result},
    ]
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        before, after = text[text.index(call) + len(call) :].split(result)
    except Exception as e:
        raise ConfigError(
            f"tools.format=hermes: the chat template cannot render a tool message "
            f"({type(e).__name__}: {e}); use tools.format=tags"
        ) from None
    if "<tool_response>" not in before:
        before, after = before + "<tool_response>\n", "\n</tool_response>" + after
    return before, after


class HermesParser:
    fmt = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    # Without a tokenizer: a tool message as the Qwen2.5 template renders it (a user turn).
    END_TURN = "<|im_end|>"
    QWEN_WRAPPER = (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n",
        "\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    )

    def __init__(self, registry: ToolRegistry, tokenizer=None):
        self.registry = registry
        self.before, self.after = template_result_wrapper(tokenizer) if tokenizer else self.QWEN_WRAPPER
        # The next assistant header: what the last line of the wrapper opens.
        self.next_turn = self.after.rstrip("\n").rsplit("\n", 1)[-1] + "\n"

    def stop_strings(self) -> list[str]:
        return [self.CLOSE]

    def parse(self, text: str) -> ToolCall | None:
        body = text.rstrip()
        if not body.endswith(self.CLOSE):
            visible = _without_think(text)
            open_at = visible.rfind(self.OPEN)
            if open_at >= 0 and visible.find(self.CLOSE, open_at) < 0:
                return ToolCall("", raw=visible[open_at:], error="unclosed <tool_call> tag")
            return None
        close_at = len(body) - len(self.CLOSE)
        open_at = body.rfind(self.OPEN, 0, close_at)
        if open_at < 0:
            return ToolCall("", raw=body[-200:], error="</tool_call> without an opening <tool_call>")
        raw = body[open_at:]
        return self._decode(body[open_at + len(self.OPEN) : close_at].strip(), raw)

    def _decode(self, payload: str, raw: str) -> ToolCall:
        try:
            call = json.loads(payload)
        except json.JSONDecodeError as e:
            return ToolCall("", raw=raw, error=f"invalid JSON in <tool_call>: {e.msg} at char {e.pos}")
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return ToolCall("", raw=raw, error='<tool_call> must hold {"name": ..., "arguments": {...}}')
        name, arguments = call["name"], call.get("arguments", {})
        if isinstance(arguments, str):  # some models encode the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return ToolCall(name, raw=raw, error="'arguments' is a string that is not valid JSON")
        if not isinstance(arguments, dict):
            return ToolCall(name, raw=raw, error="'arguments' must be a JSON object")
        tool = self.registry.get(name)
        if tool is None:
            known = ", ".join(self.registry.names) or "none"
            return ToolCall(name, arguments, raw, error=f"unknown tool {name!r}; available: {known}")
        params = tool.schema()["function"]["parameters"]
        missing = [p for p in params.get("required", []) if p not in arguments]
        if missing:
            return ToolCall(name, arguments, raw, error=f"{name}: missing argument(s) {missing}")
        wrong = [
            p
            for p, spec in params["properties"].items()
            if spec.get("type") == "string" and p in arguments and not isinstance(arguments[p], str)
        ]
        if wrong:
            return ToolCall(name, arguments, raw, error=f"{name}: argument(s) {wrong} must be strings")
        if not any(str(arguments[p]).strip() for p in params.get("required", [])):
            return ToolCall(name, arguments, raw, error=f"{name}: empty {main_argument(tool)!r}")
        return ToolCall(name, arguments, raw)

    def format_result(self, text: str) -> str:
        return f"{self.before}{_body(text)}{self.after}"

    def final_answer(self, text: str) -> str | None:
        """The `<answer>` if there is one, else the last assistant turn when it calls no tool."""
        tagged = _last_answer(text)
        if tagged is not None:
            return tagged
        last_turn = _without_think(text.rsplit(self.next_turn, 1)[-1]).replace(self.END_TURN, "").strip()
        if not last_turn or self.OPEN in last_turn or "</tool_response>" in last_turn:
            return None
        return last_turn


def make_parser(fmt: str, registry: ToolRegistry, tokenizer=None) -> TagParser | HermesParser:
    """The parser of `fmt`; under hermes, `tokenizer`'s chat template shapes the tool messages."""
    if fmt == "tags":
        return TagParser(registry)
    if fmt == "hermes":
        return HermesParser(registry, tokenizer)
    raise ConfigError(f"tools.format={fmt!r} is not valid; choose one of 'tags', 'hermes'")
