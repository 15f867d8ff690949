"""BFCL's conversations keep their KV cache between answers and share a common prefix with each
other (arpo/eval/bfcl/generate.py): on a tiny model, greedy, every answer equals the one a fresh
prefill of the whole conversation gives, while the engine computes far fewer prompt tokens; each
answer says how its prompt got there."""

import pytest

from arpo.config.rollout import SamplerConfig
from arpo.eval.bfcl.generate import (
    APPENDED,
    DIVERGED,
    SHARED,
    STARTED,
    Conversations,
    render,
    turn_end_ids,
)
from arpo.models.tiny import tiny_model
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.engine import NativeEngine

MAX_NEW = 12


def engine_for(model, tokenizer):
    return NativeEngine(model, tokenizer, SamplerConfig(block_size=4, num_blocks=512, max_prefill_tokens=64))


def fresh_answer(engine, tokenizer, prompt: list[int]) -> list[int]:
    """The re-prefill path: a new sequence holding the whole conversation."""
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW, stop_token_ids=turn_end_ids(tokenizer))
    seq = engine.add(prompt, params)
    tokens = []
    while engine.has_runnable():
        tokens += [event.token_id for event in engine.step()]
    engine.release(seq)
    return tokens


# The tiny Llama answers in newlines, which the next rendering repeats: its answers append. The tiny
# Qwen2 writes stray bytes that decoding drops: its conversations fork where they differ.
@pytest.mark.parametrize("family, how", [("llama", APPENDED), ("qwen2", DIVERGED)])
def test_cached_conversations_answer_as_a_fresh_prefill_does(family, how):
    model, tokenizer = tiny_model(family, seed=3)
    cached, fresh = engine_for(model, tokenizer), engine_for(model, tokenizer)
    conversations = Conversations(cached, tokenizer, MAX_NEW)
    docs = "Functions: ls(path) lists a folder; sort(files) sorts names. " * 4  # the same for all
    chats = {
        f"c{i}": [
            {"role": "system", "content": docs},
            {"role": "user", "content": f"question {i}: list the files, then sort them"},
        ]
        for i in range(3)
    }
    seen = []
    for step in range(4):
        if step == 3:  # an earlier message rewritten: the prompt no longer extends the sequence
            for messages in chats.values():
                messages[2]["content"] += " (edited)"
        prompts = {key: render(tokenizer, messages, []) for key, messages in chats.items()}
        answers = conversations.complete(prompts)
        for key, messages in chats.items():
            held = cached.token_ids(conversations.sequences[key])
            assert held[: len(prompts[key])] == prompts[key]
            assert held[len(prompts[key]) :] == fresh_answer(fresh, tokenizer, prompts[key]), (step, key)
            seen.append((step, answers[key].cache, answers[key].reused_tokens, len(prompts[key])))
            messages += [
                {"role": "assistant", "content": answers[key].text},
                {"role": "tool", "content": f"result {step}"},
            ]
    # The first conversation computes the function docs; the others fork from its sequence.
    assert [cache for step, cache, _, _ in seen if step == 0] == [STARTED, SHARED, SHARED]
    system = tokenizer.apply_chat_template(chats["c0"][:1], tokenize=False)  # the docs, rendered
    shared_docs = len(tokenizer(system, add_special_tokens=False).input_ids)
    assert all(reused >= shared_docs for step, cache, reused, _ in seen if cache == SHARED)
    assert [cache for step, cache, _, _ in seen if step in (1, 2)] == [how] * 6
    assert [cache for step, cache, _, _ in seen if step == 3] == [DIVERGED] * 3
    assert all(0 < reused < n for step, cache, reused, n in seen if cache != STARTED)
    # Computed: the tokens not reused, plus at most one per answer that reused a prefix (the last
    # token of the reused part when its K/V or logits were not kept). A fresh prefill computes every
    # prompt token.
    assert fresh.stats["prefill_tokens"] == sum(n for *_, n in seen)
    new = sum(n - reused for _, _, reused, n in seen)
    assert new <= cached.stats["prefill_tokens"] <= new + 11
    for key in chats:
        conversations.close(key)
    assert not cached.sequences
