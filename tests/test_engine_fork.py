"""Forks, pause / resume and the KV cache accounting of the native sampler."""

import pytest
import torch

from arpo.config.rollout import SamplerConfig
from arpo.models.tiny import tiny_model
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.block_manager import OutOfBlocksError
from arpo.rollout.native.engine import NativeEngine


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return tiny_model("qwen2", seed=7)


def make_engine(model_and_tokenizer, **cfg):
    model, tok = model_and_tokenizer
    return NativeEngine(model, tok, SamplerConfig(**{"block_size": 4, "num_blocks": 256, **cfg}))


def prompt_of(n, seed=0):
    return torch.randint(3, 470, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def steps(engine, n):
    events = []
    for _ in range(n):
        events += engine.step()
    return events


def run_all(engine):
    events = []
    while engine.has_runnable():
        events += engine.step()
    return events


def continuation(events, seq_id):
    return [(e.token_id, e.logprob) for e in events if e.seq_id == seq_id]


def assert_same_continuation(got, expected):
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert torch.allclose(
        torch.tensor([lp for _, lp in got]), torch.tensor([lp for _, lp in expected]), atol=1e-5
    )


def fresh_run(model_and_tokenizer, prefix, seed, n):
    engine = make_engine(model_and_tokenizer)
    seq = engine.add(prefix, SamplingParams(max_new_tokens=n, seed=seed))
    return continuation(run_all(engine), seq)


def paused_after_tool(engine, prompt, tool, seed=100, gen=5, budget=16):
    """A sequence that generated `gen` tokens, was paused and got `tool` appended (not yet prefilled)."""
    seq = engine.add(prompt, SamplingParams(max_new_tokens=budget, seed=seed))
    steps(engine, gen)
    engine.pause(seq)
    engine.resume(seq, tool)
    return seq


@pytest.mark.parametrize("when", ["before_prefill", "after_prefill"])
def test_child_equals_a_fresh_sequence_with_the_same_prefix(model_and_tokenizer, when):
    engine = make_engine(model_and_tokenizer)
    parent = paused_after_tool(engine, prompt_of(13), prompt_of(6, seed=1))
    prefix_len = len(engine.token_ids(parent))
    if when == "after_prefill":
        steps(engine, 2)  # the tool tokens are prefilled and the parent samples past them
    children = engine.fork(parent, 4, num_tokens=prefix_len, seeds=[11, 12, 13, 14])
    prefix = engine.token_ids(parent)[:prefix_len]
    events = run_all(engine)
    assert engine.stats["recomputed_tokens"] == 0
    for child, seed in zip(children, [11, 12, 13, 14]):
        assert engine.token_ids(child)[:prefix_len] == prefix
        got = continuation(events, child)
        # 16 budget minus the 5 tokens the parent generated before the fork point.
        assert_same_continuation(got, fresh_run(model_and_tokenizer, prefix, seed, 11))


def test_parent_and_children_never_see_each_others_tokens(model_and_tokenizer):
    prompt, tool = prompt_of(9, seed=2), prompt_of(5, seed=3)
    alone = make_engine(model_and_tokenizer)
    solo = paused_after_tool(alone, prompt, tool)
    solo_events = run_all(alone)

    engine = make_engine(model_and_tokenizer)
    parent = paused_after_tool(engine, prompt, tool)
    steps(engine, 3)
    children = engine.fork(parent, 3, seeds=[1, 2, 3])
    events = run_all(engine)
    parent_tokens = engine.token_ids(parent)
    assert parent_tokens == alone.token_ids(solo)
    assert_same_continuation(continuation(events, parent), continuation(solo_events, solo)[3:])
    for child in children:
        assert (
            engine.token_ids(child)[: len(prompt) + 5 + len(tool) + 3]
            == parent_tokens[: len(prompt) + 5 + len(tool) + 3]
        )
        assert engine.token_ids(child) != parent_tokens


def test_fork_in_the_middle_recomputes_one_token_per_child(model_and_tokenizer):
    engine = make_engine(model_and_tokenizer)
    parent = engine.add(prompt_of(10), SamplingParams(max_new_tokens=8, seed=5))
    steps(engine, 6)
    point = 13  # inside the generated tokens: no logits kept there
    children = engine.fork(parent, 2, num_tokens=point, seeds=[21, 22])
    events = run_all(engine)
    assert engine.stats["recomputed_tokens"] == 2
    prefix = engine.token_ids(parent)[:point]
    for child, seed in zip(children, [21, 22]):
        assert_same_continuation(continuation(events, child), fresh_run(model_and_tokenizer, prefix, seed, 5))


def test_forking_a_thousand_token_sequence_into_eight_adds_at_most_eight_blocks(model_and_tokenizer):
    engine = make_engine(model_and_tokenizer, block_size=16, num_blocks=128, max_prefill_tokens=1024)
    parent = engine.add(prompt_of(1000, seed=4), SamplingParams(max_new_tokens=4, seed=0))
    engine.step()
    before = engine.blocks.num_used_blocks
    assert before == 63
    children = engine.fork(parent, 8, num_tokens=1000, seeds=list(range(8)))
    assert engine.blocks.num_used_blocks == before
    steps(engine, 2)  # every child samples from the kept logits, then writes its first token
    assert engine.blocks.num_used_blocks - before <= 8
    assert engine.blocks.num_shared_blocks == 62
    assert engine.stats["recomputed_tokens"] == 0
    assert engine.stats["prefill_tokens"] == 1000
    for child in children:
        engine.release(child)
    engine.release(parent)
    assert engine.blocks.num_used_blocks == 0


def test_pause_resume_equals_one_uninterrupted_prefill(model_and_tokenizer):
    prompt, tool = prompt_of(11, seed=6), prompt_of(7, seed=8)
    greedy = SamplingParams(temperature=0, max_new_tokens=20)
    engine = make_engine(model_and_tokenizer)
    seq = engine.add(prompt, greedy)
    steps(engine, 4)
    engine.pause(seq)
    assert not engine.has_runnable() and engine.step() == []
    engine.resume(seq, tool)
    events = continuation(run_all(engine), seq)
    resumed_prefix = engine.token_ids(seq)[: len(prompt) + 4 + len(tool)]

    other = make_engine(model_and_tokenizer)
    fresh = other.add(resumed_prefix, SamplingParams(temperature=0, max_new_tokens=16))
    assert_same_continuation(events, continuation(run_all(other), fresh))


def test_stop_token_and_stop_string_pause_eos_finishes(model_and_tokenizer):
    engine = make_engine(model_and_tokenizer)
    probe = engine.add(prompt_of(8, seed=9), SamplingParams(temperature=0, max_new_tokens=6))
    greedy = engine.token_ids(probe)[8:] if run_all(engine) else []
    prompt = engine.token_ids(probe)[:8]

    seq = engine.add(prompt, SamplingParams(temperature=0, max_new_tokens=6, stop_token_ids=[greedy[2]]))
    events = run_all(engine)
    assert [e.status for e in events] == ["running", "running", "paused"] and events[
        -1
    ].finish_reason == "stop"
    assert engine.status(seq) == ("paused", "stop") and engine.blocks.num_used_blocks > 0

    tok = model_and_tokenizer[1]
    stop = tok.decode(greedy[1:3])
    seq2 = engine.add(prompt, SamplingParams(temperature=0, max_new_tokens=6, stop=[stop]))
    assert len(run_all(engine)) == 3 and engine.status(seq2)[0] == "paused"
    seq3 = engine.add(prompt, SamplingParams(temperature=0, max_new_tokens=6, eos_token_ids=[greedy[1]]))
    events = run_all(engine)
    assert events[-1].status == "finished" and events[-1].finish_reason == "eos"
    assert engine.token_ids(seq3) == prompt + greedy[:2]
    for s in (probe, seq, seq2, seq3):
        engine.release(s)
    assert engine.blocks.num_used_blocks == 0


def test_stop_string_ending_inside_a_token_pauses_there(model_and_tokenizer):
    """A token may carry characters past the stop string (e.g. `>\n` closing a tag)."""
    engine = make_engine(model_and_tokenizer)
    tok = model_and_tokenizer[1]
    probe = engine.add(prompt_of(8, seed=9), SamplingParams(temperature=0, max_new_tokens=48))
    run_all(engine)
    prompt, greedy = engine.token_ids(probe)[:8], engine.token_ids(probe)[8:]
    j = next(j for j in range(1, len(greedy)) if len(tok.decode(greedy[j : j + 1])) > 1)
    inner = tok.decode(greedy[: j + 1])[: len(tok.decode(greedy[:j])) + 1]
    seq = engine.add(prompt, SamplingParams(temperature=0, max_new_tokens=48, stop=[inner]))
    assert len(run_all(engine)) == j + 1 and engine.status(seq) == ("paused", "stop")


def test_accounting_returns_to_zero_after_many_forks(model_and_tokenizer):
    engine = make_engine(model_and_tokenizer, num_blocks=200)
    gen = torch.Generator().manual_seed(0)
    roots = [
        engine.add(prompt_of(5 + 3 * i, seed=i), SamplingParams(max_new_tokens=12, seed=i)) for i in range(3)
    ]
    live = list(roots)
    for round_ in range(10):
        steps(engine, 2)
        candidates = [s for s in live if engine.status(s)[0] != "finished"]
        if candidates:
            seq = candidates[int(torch.randint(len(candidates), (1,), generator=gen))]
            point = int(torch.randint(1, len(engine.token_ids(seq)) + 1, (1,), generator=gen))
            live += engine.fork(seq, 2, num_tokens=point, seeds=[round_, round_ + 100])
        if round_ % 3 == 2:
            engine.release(live.pop(0))
    assert engine.blocks.num_shared_blocks > 0
    run_all(engine)
    for seq in live:
        engine.release(seq)
    assert engine.blocks.num_used_blocks == 0 and engine.blocks.num_shared_blocks == 0
    assert engine.blocks.num_free_blocks == 200


def test_out_of_blocks_preempts_and_recomputes_without_changing_results(model_and_tokenizer):
    prompts = [prompt_of(n, seed=n) for n in (10, 14, 7, 12)]
    params = [SamplingParams(max_new_tokens=10, seed=i) for i in range(4)]

    def run(num_blocks):
        engine = make_engine(model_and_tokenizer, num_blocks=num_blocks)
        ids = [engine.add(p, sp) for p, sp in zip(prompts, params)]
        run_all(engine)
        return [engine.token_ids(i) for i in ids], engine.stats

    roomy, roomy_stats = run(256)
    tight, tight_stats = run(10)  # 40 slots for ~83 tokens: sequences must wait or be preempted
    assert tight == roomy
    assert roomy_stats["preemptions"] == 0 and tight_stats["preemptions"] > 0
    assert tight_stats["recomputed_tokens"] > 0
    assert tight_stats["peak_used_blocks"] <= 10


def test_a_sequence_larger_than_the_cache_is_an_error(model_and_tokenizer):
    engine = make_engine(model_and_tokenizer, num_blocks=3)
    engine.add(prompt_of(20), SamplingParams(max_new_tokens=2))
    with pytest.raises(OutOfBlocksError, match="needs 5 KV blocks"):
        engine.step()
