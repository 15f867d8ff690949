"""BFCL in `arpo eval`, the parts that need no bfcl-eval environment: category names and groups,
the leaderboard weighting, call-format choice and function-calling output decoding."""

import pytest

from arpo.data.example import DataError
from arpo.errors import ArpoError
from arpo.eval.bfcl.calls import FC, PROMPT, assistant_message, call_style, decode_fc
from arpo.eval.bfcl.categories import MULTI_TURN, SUPPORTED, parse, weighted_overall
from arpo.eval.bfcl.dialogue import Dialogue

# A Hermes-style template that renders tool schemas (as Qwen's and Hermes' templates do).
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}"
    "</tools><|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>{% endfor %}"
    "<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_parse_names_groups_and_order():
    assert parse("bfcl:simple_python,irrelevance,multi_turn_base") == [
        "simple_python",
        "irrelevance",
        "multi_turn_base",
    ]
    assert parse("bfcl:multi_turn,multi_turn_base") == list(MULTI_TURN)
    assert parse("bfcl:offline") == list(SUPPORTED)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bfcl:simple_pyton", "unknown BFCL category 'simple_pyton'"),
        ("bfcl:web_search_base", "needs the network"),
        ("bfcl:", "names no category"),
    ],
)
def test_parse_rejects_bad_names(spec, message):
    with pytest.raises(DataError, match=message):
        parse(spec)


def _results(**accuracy):
    return {c: {"accuracy": a, "entries": 10} for c, a in accuracy.items()}


def test_weighted_overall_follows_the_leaderboard_tree():
    # Non-live: simple is the mean of its three languages, then a mean with multiple.
    score, left_out = weighted_overall(
        _results(simple_python=1.0, simple_java=0.0, simple_javascript=0.5, multiple=0.0)
    )
    assert score == pytest.approx((0.5 + 0.0) / 2)
    assert "parallel" in left_out and "multi_turn_base" in left_out and "web_search" in left_out
    # Parts weigh 10 (non-live), 10 (hallucination), 30 (multi-turn), renormalised over those run.
    score, _ = weighted_overall(_results(simple_python=1.0, irrelevance=0.5, multi_turn_base=0.0))
    assert score == pytest.approx((10 * 1.0 + 10 * 0.5 + 30 * 0.0) / 50)
    # Live AST categories are averaged over entries, not categories.
    results = {
        "live_simple": {"accuracy": 1.0, "entries": 30},
        "live_multiple": {"accuracy": 0.0, "entries": 10},
    }
    assert weighted_overall(results)[0] == pytest.approx(0.75)
    # live_relevance is reported but not part of the overall.
    assert weighted_overall(_results(live_relevance=1.0))[0] == 0.0


def test_decode_hermes_xlam_and_failures():
    names = {"math_factorial": "math.factorial"}
    call = '{"name": "math_factorial", "arguments": {"number": 5}}'
    hermes = f"<think>\nplan\n</think>\n<tool_call>\n{call}\n</tool_call>"
    assert decode_fc(hermes, names) == {"calls": [{"name": "math.factorial", "arguments": {"number": 5}}]}
    xlam = '[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": "{\\"b\\": 2}"}]'
    assert decode_fc(xlam, {}) == {
        "calls": [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {"b": 2}}]
    }
    assert decode_fc("I cannot help with that.", {}) == {"error": "no function call in the output"}
    assert "not JSON" in decode_fc("<tool_call>\n{name: f}\n</tool_call>", {})["error"]
    assert "arguments of f are not JSON" in decode_fc('[{"name": "f", "arguments": "a=1"}]', {})["error"]
    assert "must be an object" in decode_fc("[1, 2]", {})["error"]


def test_assistant_message_uses_schema_names():
    decoded = {"calls": [{"name": "math.factorial", "arguments": {"number": 5}}]}
    message = assistant_message("", decoded, {"math_factorial": "math.factorial"})
    assert message["tool_calls"][0]["function"] == {"name": "math_factorial", "arguments": {"number": 5}}


def test_call_style_from_the_chat_template():
    from arpo.models.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    assert call_style(tokenizer, "tiny") == PROMPT  # plain ChatML ignores tools
    tokenizer.chat_template = TOOL_TEMPLATE
    assert call_style(tokenizer, "tiny") == FC
    tokenizer.chat_template = None
    with pytest.raises(ArpoError, match="no chat template"):
        call_style(tokenizer, "tiny")


def _entry(turns, holdouts=None):
    return {
        "id": "multi_turn_miss_func_0",
        "question": turns,
        "function": [{"name": "ls"}],
        "tools": [{"type": "function", "function": {"name": "ls"}}],
        "system_prompt": "SYSTEM",
        "holdouts": holdouts or {},
    }


def test_dialogue_turn_rules():
    holdout = {
        "1": {
            "tools": [{"type": "function", "function": {"name": "cd"}}],
            "fc_message": "more",
            "prompt_message": "docs",
        }
    }
    d = Dialogue("multi_turn_miss_func", _entry([[{"role": "user", "content": "a"}], []], holdout), FC, True)
    d.start()
    assert [m["content"] for m in d.messages] == ["a"]
    d.record("x", {"error": "no function call in the output"})
    d.answer_without_calls("x", None, "no function call")
    assert d.turn == 1 and d.messages[-1] == {"role": "user", "content": "more"}
    assert [t["function"]["name"] for t in d.tools] == ["ls", "cd"]
    # Each answer with calls stays in the turn; answer 21 force-quits the entry.
    for _ in range(21):
        assert not d.done
        d.record("c", {"calls": [{"name": "cd", "arguments": {}}]})
        d.answer_with_results("c", d.outputs[-1][-1], ["cd()"], ["ok"])
    assert d.done and len(d.outputs) == 2 and len(d.outputs[1]) == 21
    # Prompt style: BFCL's system prompt replaces (it already holds) the question's own system text.
    p = Dialogue(
        "multi_turn_base",
        _entry([[{"role": "system", "content": "own"}, {"role": "user", "content": "q"}]]),
        PROMPT,
        True,
    )
    p.start()
    assert p.messages == [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "q"}]


GIB = 2**30
SMOLLM2_KV = 30 * 2 * 3 * 64 * 4  # bytes per token: layers, K and V, KV heads, head dim, float32


@pytest.mark.parametrize(
    "overrides, free_bytes, expected",
    [
        ([], 0, 4),  # no memory to spare: the configured 32768 tokens hold four conversations of 8192
        ([], 4 * GIB, 5),  # half of 4 GiB holds five at 8192 tokens of 46080 bytes
        ([], 16 * GIB, 16),  # room for 22: eval.batch_size bounds it
        (["rollout.sampler.kv_cache_tokens=100000"], 0, 12),
        (["rollout.sampler.num_blocks=1024", "rollout.sampler.block_size=16"], 0, 2),
    ],
)
def test_multi_turn_conversations_at_once_fit_half_the_free_memory(overrides, free_bytes, expected):
    from arpo.config import load_config
    from arpo.eval.bfcl.sizing import conversations_at_once, multi_turn_slots, with_cache_for

    cfg = load_config(None, ["eval.batch_size=16", *overrides])
    slots = multi_turn_slots(cfg, 8192, SMOLLM2_KV, free_bytes)
    assert slots == expected
    assert conversations_at_once(cfg, "multi_turn_base", slots) == expected
    assert conversations_at_once(cfg, "simple_python", slots) == 16  # one answer each: nothing kept
    vllm = load_config(None, ["eval.batch_size=16", "rollout.engine=vllm"])
    assert conversations_at_once(vllm, "multi_turn_base", slots) == 16  # vLLM manages its own cache
    sampler = with_cache_for(cfg, slots * 8192).rollout.sampler
    assert sampler.num_blocks * sampler.block_size >= max(slots * 8192, 32768 if not overrides else 0)


@pytest.mark.parametrize("dtype", ["auto", "bfloat16"])
def test_kv_bytes_per_token_match_the_native_cache(dtype):
    from arpo.config.rollout import SamplerConfig
    from arpo.eval.bfcl.sizing import kv_bytes_per_token
    from arpo.models.tiny import tiny_model
    from arpo.rollout.native.engine import NativeEngine

    model, tokenizer = tiny_model("qwen3")
    sampler = SamplerConfig(block_size=4, num_blocks=8, dtype=dtype)
    engine = NativeEngine(model, tokenizer, sampler)
    assert kv_bytes_per_token(model, sampler) * 4 == engine.runner.kv_cache_bytes_per_block
