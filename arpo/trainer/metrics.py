"""The scalar metrics of one training step: reward, actor, log-prob mismatch (the verl-named ones
are in verl_metrics.py, the logged samples in samples.py)."""

from __future__ import annotations

import torch

from arpo.agent.rollout import accuracy_of
from arpo.algo.advantages import grpo_advantages
from arpo.rollout.tree import Group


def reward_metrics(groups: list[Group]) -> dict:
    rewards = torch.tensor([t.reward for g in groups for t in g.trajectories], dtype=torch.float64)
    acc = [accuracy_of(t) for g in groups for t in g.trajectories]
    return {
        "reward/mean": rewards.mean().item(),
        "reward/max": rewards.max().item(),
        "reward/min": rewards.min().item(),
        "reward/accuracy": sum(acc) / len(acc),
        # a user reward function that raised scored 0: never silently
        "reward/error_rate": sum("reward_error" in t.reward_info for g in groups for t in g.trajectories)
        / len(acc),
    }


def actor_metrics(actor: dict, groups: list[Group], lr: float) -> dict:
    """The updates' mean metrics under `actor/`; `frac_reward_zero_std` of the whole batch."""
    names = {"loss": "pg_loss"}
    out = {f"actor/{names.get(k, k)}": v for k, v in actor.items() if k != "frac_reward_zero_std"}
    out["frac_reward_zero_std"] = grpo_advantages(groups)[1]["frac_reward_zero_std"]
    out["actor/lr"] = lr
    return out


def logprob_mismatch(groups: list[Group], old: list[list[list[float]]], source: str) -> dict:
    """Mean |engine log-prob - trainer log-prob| over loss tokens, when the trainer recomputed them:
    the engine runs stale or different weights when this is large."""
    if source != "recompute":
        return {}
    diffs = [
        abs(a - b)
        for g, og in zip(groups, old)
        for t, ot in zip(g.trajectories, og)
        for a, b, m in zip(t.logprobs, ot, t.loss_mask)
        if m
    ]
    return {"rollout/logprob_mismatch": sum(diffs) / len(diffs) if diffs else 0.0}
