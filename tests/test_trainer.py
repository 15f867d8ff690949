"""The training loop on a tiny model: updates, checkpoints, resume, NaN handling, artefacts."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from arpo.config import load_config
from arpo.errors import ArpoError
from arpo.models import tiny_model
from tests.conftest import ROOT

REWARD = os.path.join(ROOT, "tests", "assets", "length_reward.py") + ":digits_reward"
BASE = [
    "model.path=tiny-llama",
    "rollout.M=4",
    "rollout.N=2",
    "rollout.max_response_tokens=16",
    "data.train_size=16",
    "data.val_size=4",
    "data.prompts_per_step=2",
    f"reward.name={REWARD}",
    "trainer.lr=1e-2",
    "trainer.warmup_steps=0",
    "trainer.wandb=disabled",
]
# Metrics that legitimately differ between two runs of the same computation.
VOLATILE = ("timing_s/", "perf/", "tools/latency_s")


def rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def stable(row):
    return {k: v for k, v in row.items() if not k.startswith(VOLATILE)}


def run_train(run_dir, *extra):
    from arpo.trainer.run import train

    return train(load_config(None, [*BASE, f"run_dir={run_dir}", *extra]))


def test_training_updates_weights_and_writes_artefacts(tmp_path):
    run_dir = tmp_path / "run"
    summary = run_train(run_dir, "trainer.steps=2", "trainer.save_every=1", "trainer.wandb=offline")
    metrics = rows(run_dir)
    train_rows = [r for r in metrics if "actor/pg_loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for r in train_rows:
        for key in ("reward/mean", "frac_reward_zero_std", "actor/pg_loss", "actor/pg_clipfrac_upper",
                    "actor/ppo_kl", "actor/entropy", "actor/grad_norm", "actor/lr", "response_length/mean",
                    "tools/calls_per_traj", "tools/calls_executed", "rollout/sampled_tokens",
                    "arpo/branches_per_prompt", "rollout/logprob_mismatch",
                    "timing_s/rollout", "timing_s/update", "timing_s/step", "perf/tokens_per_s"):  # fmt: skip
            assert key in r, key
        assert all(v is None or (isinstance(v, (int, float)) and v == v) for v in r.values())
        assert r["actor/grad_norm"] > 0
    # The engine reads the trained tensors: after the first update (lr 1e-2) its log-probs still
    # equal the trainer's; stale rollout weights would show a large mismatch here.
    assert train_rows[1]["rollout/logprob_mismatch"] < 1e-4
    initial, _ = tiny_model("llama")
    saved = load_file(run_dir / "checkpoints" / "step-000002" / "hf" / "model.safetensors")
    changed = [n for n, p in initial.named_parameters() if n in saved and not torch.equal(saved[n], p)]
    assert len(changed) > len(saved) // 2
    for name in ("config.yaml", "training.png", "summary.md", "summary.json", "samples.jsonl"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "wandb").is_dir()
    # trainer.log_trajectories (8) trajectories per step, with a per-token entropy each.
    records = [json.loads(line) for line in open(run_dir / "trajectories.jsonl")]
    assert [r["step"] for r in records] == [1] * 8 + [2] * 8
    assert all(len(r["entropies"]) == len(r["loss_mask"]) > 0 for r in records)
    assert set(summary["eval_before"]) >= {"accuracy", "tool_call_rate"}
    assert len(list((run_dir / "checkpoints").iterdir())) == 2  # keep_last=2


def test_checkpoint_export_reloads_in_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_train(tmp_path, "trainer.steps=1", "trainer.save_every=1")
    hf = tmp_path / "checkpoints" / "step-000001" / "hf"
    model = AutoModelForCausalLM.from_pretrained(hf)
    tok = AutoTokenizer.from_pretrained(hf)
    ids = tok("<python>print(2)</python>", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


def test_nan_gradients_skip_the_step(tmp_path, monkeypatch):
    import arpo.trainer.update as update

    real = update.policy_loss_backward
    calls = {"n": 0}

    def poisoned(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            next(model.parameters()).grad.fill_(float("nan"))
        return out

    monkeypatch.setattr(update, "policy_loss_backward", poisoned)
    run_train(tmp_path, "trainer.steps=2", "trainer.save_every=1", "trainer.keep_last=2")
    train_rows = [r for r in rows(tmp_path) if "actor/skipped" in r]
    assert [r["actor/skipped"] for r in train_rows] == [1.0, 0.0]
    initial, _ = tiny_model("llama")
    after_skip = load_file(tmp_path / "checkpoints" / "step-000001" / "hf" / "model.safetensors")
    for n, p in initial.named_parameters():
        if n in after_skip:
            assert torch.equal(after_skip[n], p), n  # the poisoned step changed nothing
    assert all(torch.isfinite(t).all() for t in load_file(
        tmp_path / "checkpoints" / "step-000002" / "hf" / "model.safetensors").values())  # fmt: skip


def test_repeated_nan_stops_with_a_clear_error(tmp_path, monkeypatch):
    import arpo.trainer.update as update

    real = update.policy_loss_backward

    def always_nan(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        next(model.parameters()).grad.fill_(float("nan"))
        return out

    monkeypatch.setattr(update, "policy_loss_backward", always_nan)
    with pytest.raises(ArpoError, match="consecutive steps had non-finite"):
        run_train(tmp_path, "trainer.steps=5", "trainer.save_every=0")


def _cli(run_dir, *extra):
    args = [sys.executable, "-m", "arpo", "train", *BASE, f"run_dir={run_dir}", *extra]
    return subprocess.Popen(args, cwd=str(run_dir.parent), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    common = ("trainer.steps=4", "trainer.save_every=1", "trainer.keep_last=4")
    straight = tmp_path / "straight"
    straight.mkdir()
    assert _cli(straight, *common).wait(timeout=600) == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = _cli(killed, *common)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "step-000002").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _cli(killed, *common)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert "resumed from" in err.decode()
    assert [stable(r) for r in rows(killed)] == [stable(r) for r in rows(straight)]
    trajectories = [(p / "trajectories.jsonl").read_text() for p in (killed, straight)]
    assert trajectories[0] == trajectories[1]


@pytest.mark.slow
@pytest.mark.multiproc
def test_torchrun_two_ranks_match_one_process(tmp_path):
    """FSDP2 over 2 gloo ranks, one prompt per rank, equals one process with both prompts: same
    rollouts (seeds keyed by global prompt index), same global token-mean loss, same parameters."""
    # lr 1e-3: Adam turns summation-order noise in near-zero gradients into lr-sized steps.
    common = [*BASE, "trainer.steps=2", "trainer.save_every=2", "data.val_size=2", "trainer.lr=1e-3"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "arpo", "train", *common, f"run_dir={single}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "arpo", "train", *common, f"run_dir={multi}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(single / "checkpoints" / "step-000002" / "hf" / "model.safetensors")
    b = load_file(multi / "checkpoints" / "step-000002" / "hf" / "model.safetensors")
    assert a.keys() == b.keys()
    initial, _ = tiny_model("llama")
    assert not torch.equal(a["model.norm.weight"], initial.model.norm.weight)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    train_a = [r for r in rows(single) if "actor/pg_loss" in r]
    train_b = [r for r in rows(multi) if "actor/pg_loss" in r]
    assert [r["reward/mean"] for r in train_a] == pytest.approx([r["reward/mean"] for r in train_b])
    # The rollout engine's full copy is refreshed from the shards after each update.
    assert train_b[1]["rollout/logprob_mismatch"] < 1e-4
