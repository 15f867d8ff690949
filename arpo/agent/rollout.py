"""Rollout plus reward: examples -> scored trajectory groups, for training and evaluation."""

from __future__ import annotations

import dataclasses

from arpo.data import Example
from arpo.rollout.arpo_rollout import rollout_groups
from arpo.rollout.config import RolloutConfig
from arpo.rollout.tree import Group
from arpo.trainer.batches import prompt_ids


def generate(
    c, engine, examples: list[Example], cfg: RolloutConfig, seed: int, group_ids: list[int]
) -> list[Group]:
    """Trajectory groups of `examples`; seeds derive from (seed, group id), so a group's rollout does
    not depend on which rank or batch it ran in."""
    prompts = [prompt_ids(c.tokenizer, ex) for ex in examples]
    return rollout_groups(engine, c.tokenizer, c.parser, c.executor, prompts, cfg, seed, group_ids=group_ids)


def score(c, groups: list[Group], examples: list[Example]) -> None:
    for g, ex in zip(groups, examples):
        g.ground_truth, g.extra = ex.ground_truth, ex.extra
        for t in g.trajectories:
            extra = {**ex.extra, "tools_used": [call.name for call in t.tool_calls]}
            out = c.reward_fn(t.text, ex.ground_truth, extra)
            t.reward, t.reward_info = out["score"], out


def greedy(cfg: RolloutConfig) -> RolloutConfig:
    """One greedy trajectory per prompt, no branching."""
    return eval_rollout(cfg, temperature=0.0, samples=1)


def eval_rollout(cfg: RolloutConfig, temperature: float, samples: int) -> RolloutConfig:
    """`samples` independent trajectories per prompt at `temperature` (0: greedy), no branching."""
    return dataclasses.replace(cfg, M=samples, N=samples, temperature=temperature, top_p=1.0, top_k=0)


def eval_metrics(groups: list[Group], prefix: str = "val/") -> dict[str, float]:
    trajs = [t for g in groups for t in g.trajectories]
    n = max(1, len(trajs))
    return {
        f"{prefix}accuracy": sum(float(t.reward_info.get("acc", t.reward > 0)) for t in trajs) / n,
        f"{prefix}reward": sum(t.reward for t in trajs) / n,
        f"{prefix}tool_call_rate": sum(1.0 for t in trajs if t.tool_calls) / n,
        f"{prefix}calls_per_question": sum(len(t.tool_calls) for t in trajs) / n,
        f"{prefix}response_length": sum(len(t.tokens) for t in trajs) / n,
    }
