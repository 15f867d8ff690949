"""The scalar metrics of one training step (reward, actor, log-prob mismatch) and the rollout
samples logged beside them."""

from __future__ import annotations

import torch

from arpo.agent.rollout import accuracy_of
from arpo.rollout.tree import Group


def reward_metrics(groups: list[Group]) -> dict:
    rewards = torch.tensor([t.reward for g in groups for t in g.trajectories], dtype=torch.float64)
    acc = [accuracy_of(t) for g in groups for t in g.trajectories]
    return {
        "reward/mean": rewards.mean().item(),
        "reward/max": rewards.max().item(),
        "reward/min": rewards.min().item(),
        "reward/accuracy": sum(acc) / len(acc),
    }


def actor_metrics(actor: dict, grad_norm: float, lr: float, skipped: float) -> dict:
    names = {"loss": "pg_loss"}
    out = {f"actor/{names.get(k, k)}": v for k, v in actor.items() if k != "frac_reward_zero_std"}
    if "frac_reward_zero_std" in actor:
        out["frac_reward_zero_std"] = actor["frac_reward_zero_std"]
    out.update({"actor/grad_norm": grad_norm, "actor/lr": lr, "actor/skipped": skipped})
    return out


def logprob_mismatch(groups: list[Group], old: list[list[list[float]]]) -> float:
    """Mean |engine log-prob - trainer log-prob| over loss tokens: the engine runs stale or
    different weights when this is large."""
    diffs = [
        abs(a - b)
        for g, og in zip(groups, old)
        for t, ot in zip(g.trajectories, og)
        for a, b, m in zip(t.logprobs, ot, t.loss_mask)
        if m
    ]
    return sum(diffs) / len(diffs) if diffs else 0.0


def _call_row(call) -> dict:
    """A tool call as logged: what was asked, what the model read, and what the budgets cut."""
    keys = ("name", "arguments", "result", "error", "result_tokens", "truncated")
    return {k: getattr(call, k) for k in keys}


def sample_rows(tokenizer, groups: list[Group], n: int) -> list[dict]:
    """The best-rewarded trajectory of each of the first `n` groups, decoded."""
    rows = []
    for g in groups[:n]:
        best = max(g.trajectories, key=lambda t: t.reward)
        rows.append(
            {
                "prompt": tokenizer.decode(g.prompt_ids),
                "response": best.text,
                "reward": best.reward,
                "tool_calls": len(best.tool_calls),
                "calls": [_call_row(c) for c in best.tool_calls],
                "finish_reason": best.finish_reason,
                "branches": g.stats.get("branches", 0),
            }
        )
    return rows
