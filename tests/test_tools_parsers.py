"""Tool-call parsers: well-formed and malformed calls of both formats, results, final answers."""

import json

import pyarrow.parquet as pq
import pytest

from arpo.config.tools import PythonToolConfig, SearchToolConfig, ToolsConfig
from arpo.errors import ConfigError
from arpo.tools.parsers import HermesParser, TagParser, make_parser
from arpo.tools.python_tool import PythonTool
from arpo.tools.registry import ToolRegistry, build_tools
from arpo.tools.search_tool import SearchTool


class EchoBackend:
    def search(self, query, k):
        return [f"about {query}"]


@pytest.fixture
def both():
    return ToolRegistry(
        [PythonTool(PythonToolConfig()), SearchTool(SearchToolConfig(), backend=EchoBackend())]
    )


@pytest.fixture
def python_only():
    return ToolRegistry([PythonTool(PythonToolConfig())])


# ---- tags (ARPO) ----


def test_tag_stop_strings_cover_both_arpo_tools(python_only):
    assert set(TagParser(python_only).stop_strings()) == {"</python>", "</search>"}


def test_tag_parse_after_think_and_prose(both):
    p = TagParser(both)
    text = (
        "<think> I could write <python> here but first reason. </think>\n"
        "Let me compute.\n<python>\nprint(37 * 59)\n</python>"
    )
    call = p.parse(text)
    assert call.error is None and call.name == "python" and call.arguments == {"code": "print(37 * 59)"}
    assert call.raw == "<python>\nprint(37 * 59)\n</python>"
    call = p.parse("<think>hm</think> <search> capital of Peru </search>\n")
    assert call.error is None and call.name == "search" and call.arguments == {"query": " capital of Peru "}


def test_tag_parse_takes_the_last_call(both):
    text = "<python>1</python>\n<result>\n1\n</result>\nnow <search>second</search>"
    call = TagParser(both).parse(text)
    assert call.name == "search" and call.arguments == {"query": "second"}


@pytest.mark.parametrize(
    "text, name, message",
    [
        ("<python>print(1)", "python", "unclosed <python>"),
        ("I think <search>who is", "search", "unclosed <search>"),
        ("print(1)</python>", "python", "without an opening"),
        ("<python>   \n </python>", "python", "empty <python>"),
        ("<python></python>", "python", "empty <python>"),
    ],
)
def test_tag_malformed_calls_carry_errors(both, text, name, message):
    call = TagParser(both).parse(text)
    assert call is not None and call.name == name and message in call.error


def test_tag_disabled_tool_is_an_error_not_silence(python_only):
    call = TagParser(python_only).parse("<search>weather</search>")
    assert call.name == "search" and "not enabled" in call.error and "<python>" in call.error


def test_tag_no_call(both):
    p = TagParser(both)
    assert p.parse("Just thinking. <answer>42</answer>") is None
    assert p.parse("") is None
    assert p.parse("<think>maybe <python> later</think> no call") is None  # mentions inside think


def test_tag_result_and_answer(both):
    p = TagParser(both)
    assert p.format_result("2183") == "\n<result>\n2183\n</result>\n"
    assert p.final_answer("x <answer> The final answer is \\[ \\boxed{7} \\] </answer>") == (
        "The final answer is \\[ \\boxed{7} \\]"
    )
    assert p.final_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert p.final_answer("<think><answer>draft</answer></think> no final") is None
    assert p.final_answer("<answer>unclosed") is None


def test_arpo_system_prompt_convention(shared_data):
    """The authors' prompt uses exactly the tags the tag parser handles."""
    rows = pq.read_table(f"{shared_data}/arpo/rl/train_10k.parquet", columns=["prompt"]).slice(0, 50)
    system = rows.to_pylist()[0]["prompt"][0]["content"]
    for tag in ("<search>", "</search>", "<python>", "</python>", "<result>", "</result>", "<answer>"):
        assert tag in system
    example = system[system.index("<python>") :]
    call = TagParser(build_tools(ToolsConfig(enabled=["python"]))).parse(
        example[: example.index("</python>") + 9]
    )
    assert call.error is None and call.arguments == {"code": " python code here "}


# ---- hermes (Qwen) ----


def _hermes(payload):
    return f"Let me check.\n<tool_call>\n{payload}\n</tool_call>"


def test_hermes_well_formed(both):
    p = HermesParser(both)
    assert p.stop_strings() == ["</tool_call>"]
    call = p.parse(
        "<think>plan</think>" + _hermes(json.dumps({"name": "python", "arguments": {"code": "1+1"}}))
    )
    assert call.error is None and call.name == "python" and call.arguments == {"code": "1+1"}
    # arguments encoded as a JSON string (some models do this)
    call = p.parse(_hermes(json.dumps({"name": "search", "arguments": json.dumps({"query": "q"})})))
    assert call.error is None and call.arguments == {"query": "q"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('<tool_call>{"name": "python", "arguments": {"code": "1"}}', "unclosed <tool_call>"),
        ('{"name": "python"}</tool_call>', "without an opening"),
        (_hermes('{"name": "python", "arguments": {"code": "1"'), "invalid JSON"),
        (_hermes("not json at all"), "invalid JSON"),
        (_hermes('["python"]'), "must hold"),
        (_hermes('{"arguments": {"code": "1"}}'), "must hold"),
        (_hermes('{"name": "calculator", "arguments": {"x": "1"}}'), "unknown tool 'calculator'"),
        (_hermes('{"name": "python", "arguments": {}}'), "missing argument(s) ['code']"),
        (_hermes('{"name": "python", "arguments": {"code": "   "}}'), "empty 'code'"),
        (_hermes('{"name": "python", "arguments": {"code": 5}}'), "must be strings"),
        (_hermes('{"name": "python", "arguments": [1]}'), "must be a JSON object"),
        (_hermes('{"name": "python", "arguments": "{bad"}'), "not valid JSON"),
    ],
)
def test_hermes_malformed_calls_carry_errors(both, text, message):
    call = HermesParser(both).parse(text)
    assert call is not None and call.error is not None and message in call.error, call


def test_hermes_result_matches_qwen_template(both):
    """A tool message rendered by the Qwen2.5 template after an assistant tool call."""
    p = HermesParser(both)
    call_text = _hermes('{"name": "python", "arguments": {"code": "1"}}')
    rendered = call_text + p.format_result("1")
    assert rendered.endswith(
        "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_hermes_final_answer(both):
    p = HermesParser(both)
    history = _hermes('{"name": "python", "arguments": {"code": "1"}}') + p.format_result("1")
    assert p.final_answer(history + "<think>ok</think>The answer is 1.<|im_end|>") == "The answer is 1."
    assert p.final_answer(history + "x <answer>1</answer>") == "1"
    assert p.final_answer(history) is None
    assert p.final_answer(history + _hermes('{"name": "python", "arguments": {"code": "2"}}')) is None


def test_make_parser(both):
    assert isinstance(make_parser("tags", both), TagParser)
    assert isinstance(make_parser("hermes", both), HermesParser)
    with pytest.raises(ConfigError):
        make_parser("xml", both)


# ---- registry ----


def test_registry_schemas_are_openai_function_schemas(tmp_path):
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"q": "Page 1: a"}))
    cfg = ToolsConfig(
        enabled=["python", "search"], search=SearchToolConfig(backend="replay", cache=str(cache))
    )
    registry = build_tools(cfg)
    assert registry.names == ["python", "search"]
    for schema in registry.schemas():
        assert schema["type"] == "function"
        fn = schema["function"]
        assert set(fn) == {"name", "description", "parameters"} and fn["description"]
        assert fn["parameters"]["type"] == "object"
        (arg,) = fn["parameters"]["required"]
        assert fn["parameters"]["properties"][arg]["type"] == "string"
    with pytest.raises(ConfigError, match="unknown tool"):
        build_tools(ToolsConfig(enabled=["python", "browser"]))
