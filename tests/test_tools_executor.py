"""The tool executor: concurrency, error capture, recorded latencies and timeouts, and the whole
path from generated text to the result tokens' text."""

import threading
import time

import pytest

from arpo.config.tools import PythonToolConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolCall, ToolError, ToolResult, function_schema
from arpo.tools.executor import ToolExecutor
from arpo.tools.parsers import HermesParser, TagParser
from arpo.tools.python_tool import PythonTool
from arpo.tools.registry import ToolRegistry


class FakeTool:
    def __init__(self, name, behaviour):
        self.name = name
        self.behaviour = behaviour
        self.calls = 0

    def schema(self):
        return function_schema(self.name, "fake", "x", "input")

    def run(self, arguments):
        self.calls += 1
        return self.behaviour(arguments)


def _raise(exc):
    def behaviour(arguments):
        raise exc

    return behaviour


@pytest.fixture
def python_registry():
    return ToolRegistry([PythonTool(PythonToolConfig(timeout_s=1.0, memory_mb=256))])


def test_calls_run_concurrently():
    barrier = threading.Barrier(4, timeout=10)  # only passes when 4 calls are in flight together
    tool = FakeTool("wait", lambda a: ToolResult(text=str(barrier.wait())))
    with ToolExecutor(ToolRegistry([tool]), workers=4) as executor:
        results = [f.result() for f in [executor.submit(ToolCall("wait", {"x": "1"})) for _ in range(4)]]
    assert sorted(r.text for r in results) == ["0", "1", "2", "3"] and all(r.error is None for r in results)


def test_failures_become_error_results_and_are_recorded():
    ok = FakeTool("ok", lambda a: ToolResult(text="fine"))
    slow = FakeTool("slow", lambda a: (time.sleep(0.05), ToolResult(text="late"))[1])
    user_error = FakeTool("bad_args", _raise(ToolError("bad_args: x is wrong")))
    bug = FakeTool("buggy", _raise(RuntimeError("boom")))
    registry = ToolRegistry([ok, slow, user_error, bug])
    with ToolExecutor(registry, workers=2) as executor:
        calls = [
            ToolCall("ok", {"x": "1"}),
            ToolCall("slow", {"x": "1"}),
            ToolCall("bad_args", {"x": "1"}),
            ToolCall("buggy", {"x": "1"}),
            ToolCall("nope", {"x": "1"}),
            ToolCall("ok", raw="<ok>", error="unclosed <ok> tag"),
        ]
        results = [executor.submit(c).result() for c in calls]
    assert [r.error for r in results] == [
        None,
        None,
        "bad_args: x is wrong",
        "internal failure of tool 'buggy' (RuntimeError: boom)",
        "unknown tool 'nope'; available: ok, slow, bad_args, buggy",
        "unclosed <ok> tag",
    ]
    assert results[2].text == "Error: bad_args: x is wrong"
    assert ok.calls == 1  # the malformed call never reached the tool
    assert results[1].latency_s >= 0.05
    summary = executor.summary()
    assert summary["ok"]["calls"] == 2 and summary["ok"]["errors"] == 1
    assert summary["slow"]["mean_latency_s"] >= 0.05 and summary["buggy"]["errors"] == 1
    assert len(executor.records) == 6


def test_python_timeouts_are_recorded(python_registry):
    with ToolExecutor(python_registry, workers=2) as executor:
        slow = executor.submit(ToolCall("python", {"code": "while True: pass"}))
        fast = executor.submit(ToolCall("python", {"code": "6 * 7"}))
        assert fast.result().text == "42\n"
        assert slow.result().timed_out
    stats = executor.summary()["python"]
    assert stats == {**stats, "calls": 2, "errors": 1, "timeouts": 1}
    assert stats["max_latency_s"] >= 1.0


def test_python_tool_strips_markdown_fence_and_rejects_empty(python_registry):
    with ToolExecutor(python_registry, workers=1) as executor:
        fenced = executor.submit(ToolCall("python", {"code": "```python\nprint(1 + 1)\n```"})).result()
        empty = executor.submit(ToolCall("python", {"code": "```python\n\n```"})).result()
    assert fenced.text == "2\n" and empty.error == "python: empty code"


def test_text_to_result_tags(python_registry):
    parser = TagParser(python_registry)
    generated = "<think>37 times 59?</think> I will compute it.\n<python>\nprint(37 * 59)\n</python>"
    assert any(generated.endswith(s) for s in parser.stop_strings())
    with ToolExecutor(python_registry, workers=1) as executor:
        result = executor.submit(parser.parse(generated)).result()
        assert parser.format_result(result.text) == "\n<result>\n2183\n</result>\n"
        broken = executor.submit(parser.parse("<python>   </python>")).result()
    assert parser.format_result(broken.text) == "\n<result>\nError: empty <python> call\n</result>\n"


def test_text_to_result_hermes(python_registry):
    parser = HermesParser(python_registry)
    generated = '<tool_call>\n{"name": "python", "arguments": {"code": "sum(range(10))"}}\n</tool_call>'
    with ToolExecutor(python_registry, workers=1) as executor:
        result = executor.submit(parser.parse(generated)).result()
        bad = executor.submit(parser.parse("<tool_call>{oops}</tool_call>")).result()
    assert parser.format_result(result.text).startswith("<|im_end|>\n<|im_start|>user\n<tool_response>\n45\n")
    assert bad.error.startswith("invalid JSON in <tool_call>")


def test_python_config_is_validated():
    with pytest.raises(ConfigError, match="timeout_s, memory_mb must be positive"):
        PythonTool(PythonToolConfig(timeout_s=0, memory_mb=-1))
    with pytest.raises(ConfigError, match="uid_base"):
        PythonTool(PythonToolConfig(uid_base=1 << 32))


def test_workers_must_be_positive(python_registry):
    with pytest.raises(ValueError):
        ToolExecutor(python_registry, workers=0)


def test_every_call_has_a_whole_call_deadline():
    release = threading.Event()
    stuck = FakeTool("stuck", lambda a: (release.wait(30), ToolResult(text="too late"))[1])
    own = FakeTool("own_deadline", lambda a: (release.wait(30), ToolResult(text="too late"))[1])
    own.deadline_s = 0.2  # a tool's own deadline wins over the executor's
    ok = FakeTool("ok", lambda a: ToolResult(text="fine"))
    try:
        with ToolExecutor(ToolRegistry([stuck, own, ok]), workers=1, deadline_s=0.5) as executor:
            results = [
                executor.submit(ToolCall(n, {"x": "1"})).result() for n in ("stuck", "own_deadline", "ok")
            ]
            stuck_r, own_r, ok_r = results
            assert stuck_r.timed_out and stuck_r.error == "tool 'stuck' gave no result within 0.5 s"
            assert stuck_r.text == f"Error: {stuck_r.error}" and 0.5 <= stuck_r.latency_s < 5
            assert own_r.timed_out and "within 0.2 s" in own_r.error and own_r.latency_s < 0.5
            assert ok_r.text == "fine"  # the single worker was free again after each deadline
            summary = executor.summary()
            assert summary["stuck"]["timeouts"] == 1 and summary["ok"]["timeouts"] == 0
    finally:
        release.set()
    with pytest.raises(ConfigError, match="deadline_s"):
        ToolExecutor(ToolRegistry([ok]), workers=1, deadline_s=0)


def test_a_tool_timeout_is_counted_as_a_timeout():
    from arpo.tools.base import ToolTimeout

    slow = FakeTool("slow_api", _raise(ToolTimeout("slow_api: no answer within 1 s")))
    with ToolExecutor(ToolRegistry([slow]), workers=1) as executor:
        result = executor.submit(ToolCall("slow_api", {"x": "1"})).result()
    assert result.timed_out and result.error == "slow_api: no answer within 1 s"
