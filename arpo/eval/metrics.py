"""Held-out numbers from scored trajectory groups (one group of samples per question): the
per-benchmark table of `arpo eval` and the `val/` metrics logged during training."""

from __future__ import annotations

from collections import Counter

from arpo.agent.rollout import accuracy_metric, accuracy_of
from arpo.eval.passk import pass_at_k
from arpo.rollout.stats import context_stats
from arpo.rollout.tree import Group

# pass@k counts a sample as solved only with full credit: QA F1 partial credit is not a solve.
SOLVED_AT = 1.0


def benchmark_metrics(groups: list[Group], k: int, wall_time_s: float) -> dict:
    """Accuracy, pass@1 and pass@k, tool calls per question (all and by tool), invalid tool-call
    rate, response length, the tools' share of the context; every mean is over all samples of all
    questions."""
    trajs = [t for g in groups for t in g.trajectories]
    n = max(1, len(trajs))
    calls = [call for t in trajs for call in t.tool_calls]
    by_tool = Counter(call.name for call in calls)
    out = {
        "questions": len(groups),
        "samples_per_question": len(trajs) / max(1, len(groups)),
        "accuracy": sum(accuracy_of(t) for t in trajs) / n,
        "accuracy_metric": ", ".join(sorted({accuracy_metric(t) for t in trajs})),
        "reward": sum(t.reward for t in trajs) / n,
    }
    for j in sorted({1, k}):
        solved = [
            pass_at_k(len(g.trajectories), sum(accuracy_of(t) >= SOLVED_AT for t in g.trajectories), j)
            for g in groups
        ]
        out[f"pass@{j}"] = sum(solved) / max(1, len(solved))
    out.update(
        {
            "tool_calls_per_question": len(calls) / n,
            "tool_calls_by_tool": {name: count / n for name, count in sorted(by_tool.items())},
            "invalid_call_rate": sum(call.error is not None for call in calls) / max(1, len(calls)),
            "response_tokens": sum(len(t.tokens) for t in trajs) / n,
            **context_stats(groups),
            "wall_time_s": wall_time_s,
        }
    )
    return out


def held_out_metrics(groups: list[Group], prefix: str = "val/") -> dict[str, float]:
    """Means over every sample: accuracy, reward, share that called a tool, calls, length and the
    tools' share of the context."""
    trajs = [t for g in groups for t in g.trajectories]
    n = max(1, len(trajs))
    return {
        **_per_source(groups),
        f"{prefix}accuracy": sum(accuracy_of(t) for t in trajs) / n,
        f"{prefix}reward": sum(t.reward for t in trajs) / n,
        f"{prefix}tool_call_rate": sum(1.0 for t in trajs if t.tool_calls) / n,
        f"{prefix}calls_per_question": sum(len(t.tool_calls) for t in trajs) / n,
        f"{prefix}response_length": sum(len(t.tokens) for t in trajs) / n,
        **{f"{prefix}{k}": v for k, v in context_stats(groups).items()},
    }


def _per_source(groups: list[Group]) -> dict[str, float]:
    """verl's name for validation accuracy per data source: `val-core/<source>/acc/mean@<samples>`."""
    by_source: dict[str, list[Group]] = {}
    for g in groups:
        by_source.setdefault(str(g.extra.get("data_source", "unknown")), []).append(g)
    out = {}
    for source, source_groups in sorted(by_source.items()):
        trajs = [t for g in source_groups for t in g.trajectories]
        samples = max(len(g.trajectories) for g in source_groups)
        out[f"val-core/{source}/acc/mean@{samples}"] = sum(accuracy_of(t) for t in trajs) / len(trajs)
    return out
