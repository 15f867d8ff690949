"""Your own tools: module:function / file.py:function / module:Class, schemas from type hints and
docstrings (or given and checked), sync and async, deadlines, and one-line start-up errors."""

import os
import time

import pytest

from arpo.config.tools import CustomToolConfig, ToolsConfig
from arpo.errors import ArpoError, ConfigError
from arpo.tools.base import ToolCall
from arpo.tools.budget import truncate_tokens
from arpo.tools.executor import ToolExecutor
from arpo.tools.registry import build_tools
from tests.conftest import ROOT

CALC = os.path.join(ROOT, "tests", "assets", "calculator.py")


def registry(*targets, enabled=(), **kw):
    custom = [CustomToolConfig(target=f"{CALC}:{t}", **kw) for t in targets]
    return build_tools(ToolsConfig(enabled=list(enabled), custom=custom))


def run(reg, name, **arguments):
    with ToolExecutor(reg, workers=1) as executor:
        return executor.submit(ToolCall(name, arguments)).result()


def test_schema_from_type_hints_and_docstring():
    reg = registry("calculate", "slow_add", "KeyValue")
    assert reg.names == ["calculate", "slow_add", "kv_get"]
    calc, add, kv = (s["function"] for s in reg.schemas())
    assert calc["description"] == "Evaluate an arithmetic expression."
    assert calc["parameters"] == {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "numbers and + - * /, e.g. 37 * 59"}},
        "required": ["expression"],
    }
    assert add["parameters"]["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert add["parameters"]["required"] == ["a"]  # b has a default
    assert kv["description"] == "Look a key up in a small table."
    assert kv["parameters"]["properties"]["key"] == {"type": "string", "description": "the key to read"}


def test_sync_async_and_class_tools_run_through_the_executor():
    reg = registry("calculate", "slow_add", "KeyValue")
    assert run(reg, "calculate", expression="37 * 59").text == "2183"
    assert run(reg, "slow_add", a=2).text == "3"
    assert run(reg, "kv_get", key="a").text == '{"n": 1}'  # non-strings come back as JSON
    failed = run(reg, "calculate", expression="2 ** 8")
    assert failed.error == "calculate: ValueError: only numbers and + - * / are allowed"
    missing = run(reg, "kv_get", key="zzz")
    assert missing.text == "Error: kv_get: KeyError: 'zzz'"
    wrong = run(reg, "slow_add", c=1)
    assert wrong.error and "unexpected keyword argument 'c'" in wrong.error


def test_deadline_applies_to_a_sync_function():
    reg = registry("sleepy", timeout_s=0.3)
    start = time.monotonic()
    result = run(reg, "sleepy", seconds=3)
    assert result.timed_out and "no result within 0.3 s" in result.text
    assert time.monotonic() - start < 2.5


def test_importable_module_target(monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(CALC))
    reg = build_tools(ToolsConfig(enabled=[], custom=[CustomToolConfig(target="calculator:calculate")]))
    assert run(reg, "calculate", expression="6 * 7").text == "42"


def test_given_schema_is_checked_against_the_signature():
    params = {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}
    schema = {"name": "calc", "description": "math", "parameters": params}
    reg = registry("calculate", name="calc", schema=schema)
    assert reg.schemas()[0]["function"]["description"] == "math"
    assert run(reg, "calc", expression="1 + 2").text == "3"
    bad = {**schema, "parameters": {**schema["parameters"], "properties": {"expr": {"type": "string"}},
                                    "required": ["expr"]}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"schema properties \['expr'\] are not parameters"):
        registry("calculate", name="calc", schema=bad)
    loose = {**schema, "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}
    with pytest.raises(ConfigError, match=r"have no default but the schema does not require them"):
        registry("calculate", name="calc", schema=loose)
    invalid = {**schema, "parameters": {"type": "object", "properties": {"expression": {"type": 7}}}}
    with pytest.raises(ConfigError, match="invalid parameters schema"):
        registry("calculate", name="calc", schema=invalid)


@pytest.mark.parametrize(
    "target, message",
    [
        ("no_hints", "parameter 'x' has no type hint"),
        ("nothing_here", "has no 'nothing_here'"),
        ("", "must look like module:function"),
    ],
)
def test_start_up_errors_are_one_line(target, message):
    spec = f"{CALC}:{target}" if target else "calculate"
    with pytest.raises(ArpoError, match=message) as info:
        build_tools(ToolsConfig(enabled=[], custom=[CustomToolConfig(target=spec)]))
    assert "\n" not in str(info.value) and "tools.custom[0]" in str(info.value)


def test_unknown_enabled_tool_says_how_to_add_one():
    with pytest.raises(ConfigError, match=r"unknown tool\(s\) \['calculator'\].*tools.custom"):
        build_tools(ToolsConfig(enabled=["calculator"]))
    reg = registry("calculate", enabled=["python", "calculate"])
    assert reg.names == ["python", "calculate"]
    with pytest.raises(ConfigError, match=r"several tools are named \['calculate'\]"):
        registry("calculate", "calculate")


def test_one_megabyte_result_keeps_head_tail_and_marker():
    from arpo.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    frames = "".join(f'  File "job.py", line {i}, in f{i}\n    f{i + 1}()\n' for i in range(25_000))
    text = "Traceback (most recent call last):\n" + frames + "ZeroDivisionError: division by zero"
    assert len(text) > 1_000_000
    shown = truncate_tokens(text, tok, 200)
    assert shown.truncated and len(tok.encode(shown.text)) <= 200
    assert shown.text.startswith("Traceback (most recent call last):")
    assert shown.text.endswith("ZeroDivisionError: division by zero")
    assert (
        f"[... {shown.tokens - len(tok.encode(shown.text)) + 9}" in shown.text
        or "tokens cut ...]" in shown.text
    )
    short = truncate_tokens("fine", tok, 200)
    assert short.text == "fine" and not short.truncated
