"""Trajectory records for the entropy picture, the per-step window metrics, and the run's
`trajectories.jsonl` (a seeded sample of trajectories per step, with their per-token entropies)."""

from __future__ import annotations

import json
import os
import random

from arpo.analysis.entropy import window_entropies
from arpo.rollout.tree import Group, Trajectory

FILE = "trajectories.jsonl"


def trajectory_record(t: Trajectory, group_id: int, step: int | None = None) -> dict:
    """Per-token entropies and loss mask, and the calls the trajectory made itself (a branch's
    inherited calls belong to its parent's record)."""
    return {
        "step": step,
        "group": group_id,
        "traj": t.id,
        "parent": t.parent,
        "fork_pos": t.fork_pos,
        "reward": t.reward,
        "entropies": [round(h, 4) for h in t.entropies],
        "loss_mask": list(t.loss_mask),
        "calls": [
            {"tool": c.name, "start": c.start, "end": c.end, "dH": c.dH, "error": c.error is not None}
            for c in t.tool_calls
            if c.start >= t.fork_pos
        ],
    }


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def entropy_metrics(groups: list[Group], k: int, prefix: str = "arpo/") -> dict[str, float]:
    """Mean entropy of the `k` generated tokens that close each call (`entropy_before_call`) and of
    the first `k` after each result (`entropy_after_result`), over every call of the step; left out
    when no call was made."""
    before, after = [], []
    for g in groups:
        for t in g.trajectories:
            record = trajectory_record(t, g.group_id)
            for call in record["calls"]:
                b, a = window_entropies(record, call, k)
                before += b
                after += a
    out = {}
    if before:
        out[f"{prefix}entropy_before_call"] = _mean(before)
    if after:
        out[f"{prefix}entropy_after_result"] = _mean(after)
    return out


def sample_records(groups: list[Group], n: int, seed: int, step: int | None) -> list[dict]:
    """`n` trajectories drawn uniformly from the step's groups, seeded by (seed, step)."""
    pool = [(g.group_id, t) for g in groups for t in g.trajectories]
    chosen = random.Random(f"trajectories:{seed}:{step}").sample(pool, min(n, len(pool)))
    return [trajectory_record(t, gid, step) for gid, t in chosen]


def append_records(path: str, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def read_records(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class TrajectoryLog:
    """`<run_dir>/trajectories.jsonl`: on resume the rows of steps after the checkpoint are
    dropped (those steps run again); a fresh run starts the file anew."""

    def __init__(self, run_dir: str, per_step: int, seed: int, start_step: int, enabled: bool = True):
        self.path = os.path.join(run_dir, FILE)
        self.per_step, self.seed = per_step, seed
        self.enabled = enabled and per_step > 0
        if not self.enabled or not os.path.exists(self.path):
            return
        kept = [r for r in read_records(self.path) if start_step and r["step"] <= start_step]
        open(self.path, "w").close()
        append_records(self.path, kept)

    def log(self, step: int, groups: list[Group]) -> None:
        if self.enabled:
            append_records(self.path, sample_records(groups, self.per_step, self.seed, step))
