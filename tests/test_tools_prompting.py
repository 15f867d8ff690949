"""What the model is shown of its tools: the chat template's own `tools=` rendering (a Qwen-style
template), the Hermes convention in the system prompt for a template that ignores `tools=`
(SmolLM2's), tags documented from the registry, tool results in the template's tool role, and
warnings for prompts that do not match the enabled tools."""

import json
import os

import pytest

from arpo.config.tools import CustomToolConfig, ToolsConfig
from arpo.data.prompts import PYTHON_SHOT, PYTHON_SYSTEM, chat
from arpo.models.tiny import tiny_tokenizer
from arpo.tools.parsers import TagParser, make_parser
from arpo.tools.prompting import prompt_warnings, render_prompt, renders_tools
from arpo.tools.registry import build_tools
from tests.conftest import ROOT, requires_smollm2

ASSETS = os.path.join(ROOT, "tests", "assets")
CALC = CustomToolConfig(target=os.path.join(ASSETS, "calculator.py") + ":calculate")
KV = CustomToolConfig(target=os.path.join(ASSETS, "calculator.py") + ":KeyValue")
ADD = CustomToolConfig(target=os.path.join(ASSETS, "calculator.py") + ":slow_add")
QUESTION = [
    {"role": "system", "content": "Answer with tools."},
    {"role": "user", "content": "What is 6 * 7?"},
]


@pytest.fixture(scope="module")
def qwen_style():
    tok = tiny_tokenizer()
    with open(os.path.join(ASSETS, "qwen_style_chat_template.jinja")) as f:
        tok.chat_template = f.read()
    return tok


@pytest.fixture(scope="module")
def tools():
    return build_tools(ToolsConfig(enabled=["python"], custom=[CALC, KV, ADD]))


def test_hermes_prompt_is_the_templates_own_rendering(qwen_style, tools):
    assert renders_tools(qwen_style)
    prompt = render_prompt(qwen_style, QUESTION, tools, "hermes")
    expected = qwen_style.apply_chat_template(
        QUESTION, tools=tools.schemas(), add_generation_prompt=True, tokenize=False
    )
    assert prompt == expected
    for schema in tools.schemas():
        assert json.dumps(schema) in prompt


def test_hermes_results_go_back_in_the_templates_tool_role(qwen_style, tools):
    parser = make_parser("hermes", tools, qwen_style)
    call = '<tool_call>\n{"name": "calculate", "arguments": {"expression": "6 * 7"}}\n</tool_call>'
    rollout_text = render_prompt(qwen_style, QUESTION, tools, "hermes") + call + parser.format_result("42")
    conversation = [*QUESTION, {"role": "assistant", "content": call}, {"role": "tool", "content": "42"}]
    expected = qwen_style.apply_chat_template(
        conversation, tools=tools.schemas(), add_generation_prompt=True, tokenize=False
    )
    assert rollout_text == expected
    assert parser.final_answer(rollout_text + "It is 42.<|im_end|>") == "It is 42."


def test_template_without_tools_gets_the_hermes_convention(tools):
    tok = tiny_tokenizer()  # plain ChatML: ignores tools=
    assert not renders_tools(tok)
    prompt = render_prompt(tok, QUESTION, tools, "hermes")
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nAnswer with tools.\n\n# Tools")
    for schema in tools.schemas():
        assert json.dumps(schema) in system
    assert "<tool_call>" in system and "<tools>" in system
    # the tool role of that template, with the result inside <tool_response>
    assert make_parser("hermes", tools, tok).format_result("42") == (
        "<|im_end|>\n<|im_start|>tool\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )


@requires_smollm2
@pytest.mark.slow
def test_smollm2_template_gets_every_schema_in_its_system_prompt(tools):
    from arpo.config import load_config
    from arpo.models.loading import resolve

    src = resolve(load_config(None, []).model.path)
    from transformers import AutoTokenizer

    folder, name = os.path.split(src.path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    assert not renders_tools(tok)
    plain = tok.apply_chat_template(
        QUESTION, tools=tools.schemas(), add_generation_prompt=True, tokenize=False
    )
    assert "calculate" not in plain  # the template drops tools=
    prompt = render_prompt(tok, QUESTION, tools, "hermes")
    system = prompt.split("<|im_end|>")[0]
    for schema in tools.schemas():
        assert json.dumps(schema) in system
    assert "<tool_call>" in system


def test_tags_document_undocumented_tools_from_the_registry(tools):
    tok = tiny_tokenizer()
    messages = chat(PYTHON_SYSTEM, (PYTHON_SHOT,), "What is 6 * 7?")
    prompt = render_prompt(tok, messages, tools, "tags")
    system = prompt.split("<|im_end|>")[0]
    assert "<calculate>expression</calculate>: Evaluate an arithmetic expression." in system
    assert "<kv_get>key</kv_get>: Look a key up in a small table." in system
    assert '<slow_add>{"a": "...", "b": "..."}</slow_add>: Add two integers, slowly.' in system
    assert system.count("<python>") == 1  # already documented by the prompt itself
    # a tool taking several arguments is called with a JSON object of them
    call = TagParser(tools).parse('<slow_add>{"a": 2, "b": 3}</slow_add>')
    assert call.error is None and call.arguments == {"a": 2, "b": 3}
    assert "JSON object" in TagParser(tools).parse("<slow_add>2</slow_add>").error


def test_prompt_tool_mismatch_warnings():
    calc_only = build_tools(ToolsConfig(enabled=[], custom=[CALC]))
    messages = chat(PYTHON_SYSTEM, (PYTHON_SHOT,), "What is 6 * 7?")
    assert prompt_warnings(messages, calc_only, "tags") == [
        "the prompt advertises <python> but tool 'python' is not enabled",
        "enabled tool 'calculate' is never mentioned in the prompt; "
        "its tag is documented in the system prompt",
    ]
    python = build_tools(ToolsConfig(enabled=["python"]))
    assert prompt_warnings(messages, python, "tags") == []
    assert prompt_warnings(messages, python, "hermes") == [
        "the prompt shows <python> tags, which tools.format=hermes does not run (it reads <tool_call> JSON)"
    ]
    assert prompt_warnings(QUESTION, python, "hermes") == []
