"""The native sampler's compiled decode step and bfloat16 mode against the eager float32 engine."""

import pytest
import torch

from arpo.config.rollout import SamplerConfig
from arpo.models.tiny import tiny_model
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.engine import NativeEngine as Engine
from arpo.rollout.native.model_runner import decode_bucket


def prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 470, (n,), generator=g).tolist() for n in lengths]


def run(model, tok, **cfg):
    """Events of a mixed batch: greedy and seeded sampled rows, finishing at different lengths, so
    the decode batch shrinks through several buckets; and a fork after a pause / resume."""
    engine = Engine(model, tok, SamplerConfig(block_size=4, num_blocks=256, max_batch_seqs=8, **cfg))
    ids = [
        engine.add(p, SamplingParams(temperature=0.0 if i % 2 else 0.8, max_new_tokens=4 + 3 * i, seed=i))
        for i, p in enumerate(prompts([3, 7, 12, 5, 9]))
    ]
    events = [engine.step() for _ in range(3)]
    engine.pause(ids[-1])
    engine.resume(ids[-1], prompts([4], seed=1)[0])
    engine.fork(ids[-1], 2, seeds=[5, 6])
    while engine.has_runnable():
        events.append(engine.step())
    return [(e.seq_id, e.token_id, e.logprob, e.entropy) for step in events for e in step]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_compiled_decode_step_equals_the_eager_step(family):
    model, tok = tiny_model(family, seed=11)
    eager, compiled = run(model, tok), run(model, tok, compile_decode=True)
    assert [e[:2] for e in compiled] == [e[:2] for e in eager]  # same sequences, same tokens
    got, expected = torch.tensor([e[2:] for e in compiled]), torch.tensor([e[2:] for e in eager])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_decode_buckets_are_powers_of_two_up_to_the_batch_limit():
    assert [decode_bucket(n, 64) for n in (1, 2, 3, 5, 16, 17, 64)] == [1, 2, 4, 8, 16, 32, 64]
    assert decode_bucket(6, 6) == 8  # a limit that is no power of two still gets a bucket for its batch


def test_bfloat16_engine_runs_a_cast_copy_and_stays_close():
    model, tok = tiny_model("qwen2", seed=12)
    full = run(model, tok)
    half = run(model, tok, dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.float32  # the policy itself is untouched
    assert len(half) == len(full)
    greedy = [(a, b) for a, b in zip(full, half) if a[0] % 2 == 1]
    mismatch = max(abs(a[2] - b[2]) for a, b in zip(full, half) if a[:2] == b[:2])
    assert 0 < mismatch < 0.5  # bf16 rounding moves the log-probs, but not far
    assert greedy
