"""PPO mini-batches and the choice of old log-probs, through the training loop on a tiny model.

With `trainer.ppo_mini_batch` = 1/4 of the batch a step makes 4 optimizer updates on disjoint whole
groups; the old log-probs stay those of the batch, so from the second update on the policy has
moved and the clip acts (`pg_clipfrac > 0`, `ppo_kl > 0`). Two gloo ranks make the same updates as
one process. With one update and `algo.old_logprobs=rollout` the step runs no old-log-prob forward
and its update equals the recomputing one.
"""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import arpo.trainer.update as update
from arpo.errors import ConfigError
from arpo.trainer.update import mean_over_updates, minibatch_plan
from tests.test_trainer import BASE, rows, run_train

FOUR = ["data.prompts_per_step=4", "trainer.ppo_mini_batch=1"]


def test_minibatch_plan_shuffles_whole_prompts_per_epoch():
    plan = minibatch_plan(8, 2, 3, seed=5)
    assert len(plan) == 12 and all(len(m) == 2 for m in plan)
    for epoch in range(3):
        assert sorted(p for m in plan[4 * epoch : 4 * epoch + 4] for p in m) == list(range(8))
    assert plan == minibatch_plan(8, 2, 3, seed=5)
    assert plan != minibatch_plan(8, 2, 3, seed=6)
    assert plan[:4] != plan[4:8]  # each epoch its own order
    assert minibatch_plan(8, 0, 2, seed=5) == [list(range(8))] * 2  # the whole batch, as before
    assert minibatch_plan(8, 8, 1, seed=5) == [list(range(8))]


def test_mean_over_updates_counts_them():
    out = mean_over_updates([{"loss": 1.0, "kl_ref": 2.0}, {"loss": 3.0}])
    assert out == {"loss": 2.0, "kl_ref": 2.0, "updates": 2.0}


def _capture(monkeypatch, name, store):
    import arpo.trainer.run as run_module

    real = getattr(update, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        store.append(out)
        return out

    # the loop holds its own reference once imported (whichever test imported it first)
    for module in (update, run_module):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, spy)


def test_quarter_mini_batches_make_four_updates_and_the_clip_acts(tmp_path, monkeypatch):
    steps = []
    _capture(monkeypatch, "ppo_update", steps)
    run_train(tmp_path, "trainer.steps=2", "trainer.save_every=0", *FOUR)
    assert [len(s) for s in steps] == [4, 4]
    for updates in steps:
        assert updates[0]["pg_clipfrac"] == 0.0 and abs(updates[0]["ppo_kl"]) < 1e-6  # old == current
        for u in updates[1:]:
            assert u["pg_clipfrac"] > 0 and u["ppo_kl"] > 0
    logged = [r for r in rows(tmp_path) if "actor/updates" in r]
    assert [r["actor/updates"] for r in logged] == [4.0, 4.0]
    for r, updates in zip(logged, steps):
        assert r["actor/pg_clipfrac"] == pytest.approx(sum(u["pg_clipfrac"] for u in updates) / 4)


def test_mini_batch_must_divide_the_batch(tmp_path):
    with pytest.raises(ConfigError, match="trainer.ppo_mini_batch=3 must divide"):
        run_train(tmp_path, "data.prompts_per_step=4", "trainer.ppo_mini_batch=3")


def _first_update(tmp_path, monkeypatch, source):
    """Loss metrics and gradients of the first step's update; how often old log-probs were computed."""
    seen, passes = {}, []
    real = update.policy_loss_backward

    def spy(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        if not seen:
            seen.update(metrics=out, grads={n: p.grad.clone() for n, p in model.named_parameters()})
        return out

    monkeypatch.setattr(update, "policy_loss_backward", spy)
    _capture(monkeypatch, "compute_logprobs", passes)
    run_train(tmp_path, "trainer.steps=1", "trainer.save_every=0", f"algo.old_logprobs={source}")
    return seen, len(passes), [r for r in rows(tmp_path) if "actor/updates" in r][0]


def test_rollout_old_logprobs_skip_the_pass_and_equal_the_recomputed_update(tmp_path, monkeypatch):
    want, want_passes, want_row = _first_update(tmp_path / "recompute", monkeypatch, "recompute")
    got, got_passes, got_row = _first_update(tmp_path / "rollout", monkeypatch, "rollout")
    assert (want_passes, got_passes) == (1, 0)
    assert want_row["timing_s/old_logprob"] > 0 and "timing_s/old_logprob" not in got_row
    assert want_row["rollout/logprob_mismatch"] < 1e-5
    for k in ("loss", "ppo_kl", "entropy"):
        assert abs(got["metrics"][k] - want["metrics"][k]) <= 1e-6, k
    for name, g in want["grads"].items():
        assert (got["grads"][name] - g).abs().max() <= 1e-6 * max(g.abs().max().item(), 1.0), name


@pytest.mark.slow
@pytest.mark.multiproc
def test_mini_batches_on_two_ranks_match_one_process(tmp_path):
    """4 prompts, 4 updates per step: 2 gloo ranks (2 prompts each; a mini-batch's only group lives
    on one rank, the other makes idle passes) reach the parameters of 1 process."""
    common = [*BASE, *FOUR, "trainer.steps=2", "trainer.save_every=2", "data.val_size=2", "trainer.lr=1e-3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launch = {
        "single": [sys.executable, "-m", "arpo", "train"],
        "multi": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                  "-m", "arpo", "train"],
    }  # fmt: skip
    for name, cmd in launch.items():
        out = subprocess.run([*cmd, *common, f"run_dir={tmp_path / name}"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
    ckpt = ("checkpoints", "step-000002", "hf", "model.safetensors")
    a, b = load_file(tmp_path.joinpath("single", *ckpt)), load_file(tmp_path.joinpath("multi", *ckpt))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5, msg=name)
    assert [r["actor/updates"] for r in rows(tmp_path / "multi") if "actor/updates" in r] == [4.0, 4.0]
