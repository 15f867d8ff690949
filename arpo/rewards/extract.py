"""Reading a response: the final answer (`<answer>...</answer>`, optionally `\\boxed{...}`), ARPO's
format check and which tools were called.

ARPO's released system prompt spells `\\boxed` as a backspace character followed by `oxed` (a
Python string escape, "\\b" + "oxed"); a model trained on it may echo that, so both spellings are
read as `\\boxed`. Tool-result bodies are ignored everywhere: a search snippet that happens to
contain `<answer>` must not count as the model's answer.
"""

from __future__ import annotations

import json
import re

_RESULT_BODY = re.compile(r"<(result|tool_response)>.*?</\1>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
TAG_TOOLS = ("search", "python")


def normalise(text: str) -> str:
    """Backspace-`oxed` read as `\\boxed`; tool-result bodies emptied (their tags stay)."""
    text = text.replace("\x08oxed", "\\boxed")
    return _RESULT_BODY.sub(lambda m: f"<{m.group(1)}></{m.group(1)}>", text)


def answer_block(text: str) -> str | None:
    """Content of the last `<answer>` block. An unclosed block at the end counts too: generation
    may stop at EOS before the closing tag."""
    text = normalise(text)
    blocks = _ANSWER.findall(text)
    if blocks:
        return blocks[-1]
    start = text.rfind("<answer>")
    return text[start + len("<answer>") :] if start >= 0 else None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (braces matched) or `\\boxed x`; None when absent or unclosed."""
    text = text.replace("\x08oxed", "\\boxed")
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    rest = text[start + len("\\boxed") :]
    if rest.startswith(" "):
        return rest.strip().split("$")[0].strip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return rest[1:i].strip()
    return None


def final_answer(text: str) -> str | None:
    """The answer a response commits to: the last `\\boxed{}` inside its last `<answer>` block,
    else the whole block; None when there is no `<answer>`."""
    block = answer_block(text)
    if block is None:
        return None
    boxed = last_boxed(block)
    return (boxed if boxed is not None else block).strip()


def _tool_tags_in_order(text: str, tag: str) -> str | None:
    pos = 0
    while (start := text.find(f"<{tag}>", pos)) >= 0:
        close = text.find(f"</{tag}>", start)
        res = text.find("<result>", start)
        res_end = text.find("</result>", res) if res >= 0 else -1
        if -1 in (close, res, res_end):
            return f"{tag}/result tags are incomplete"
        if not start < close < res < res_end:
            return f"{tag}/result tags are in the wrong order"
        pos = res_end
    return None


def arpo_format_error(text: str, require_think: bool = True) -> str | None:
    """Why a response breaks the format ARPO's reward demands, or None when it is well formed:
    paired `<think>` tags (optional), exactly one `<answer>...</answer>`, every `<search>` /
    `<python>` call closed and followed by its `<result>`, and `\\boxed{}` inside the answer."""
    text = normalise(text)
    if require_think:
        if text.count("<think>") != text.count("</think>"):
            return "<think> </think> not paired"
        if text.count("<think>") == 0:
            return "<think> not found"
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return "needs exactly one <answer> </answer>"
    for tag in TAG_TOOLS:
        if (why := _tool_tags_in_order(text, tag)) is not None:
            return why
    start, end = text.find("<answer>"), text.find("</answer>")
    if start > end:
        return "</answer> before <answer>"
    if last_boxed(text[start:end]) is None:
        return "answer is missing \\boxed{}"
    return None


def tools_used(text: str, extra: dict | None = None) -> set[str]:
    """Names of the tools a response called: `extra["tools_used"]` when the rollout recorded them,
    else read from closed tag calls and Hermes `<tool_call>` JSON."""
    if extra and extra.get("tools_used") is not None:
        return set(extra["tools_used"])
    text = normalise(text)
    used = {tag for tag in TAG_TOOLS if f"</{tag}>" in text}
    for body in _TOOL_CALL.findall(text):
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            used.add(call["name"])
    return used
