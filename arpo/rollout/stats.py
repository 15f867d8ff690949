"""Scalar rollout metrics for logging, from the groups a rollout returned."""

from __future__ import annotations

from arpo.rollout.tree import Group, ToolCallRecord, Trajectory


def own_tool_calls(t: Trajectory) -> list[ToolCallRecord]:
    """The calls a trajectory made itself; a branch also lists the calls it inherited before its fork."""
    return [c for c in t.tool_calls if c.start >= t.fork_pos]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def context_stats(groups: list[Group]) -> dict[str, float]:
    """How much of the context tools filled: each executed result's own tokens (before the budget
    cut), how often a result was cut, and the share of each trajectory's tokens from tools."""
    trajs = [t for g in groups for t in g.trajectories if t.tokens]
    calls = [c for t in trajs for c in own_tool_calls(t)]
    out = {}
    if trajs:
        out["context/tool_token_share"] = _mean([1 - sum(t.loss_mask) / len(t.tokens) for t in trajs])
    if calls:
        tokens = [float(c.result_tokens) for c in calls]
        out["tools/result_tokens/mean"] = _mean(tokens)
        out["tools/result_tokens/max"] = max(tokens)
        out["tools/truncated_rate"] = _mean([float(c.truncated) for c in calls])
    return out


def rollout_stats(groups: list[Group]) -> dict[str, float]:
    """Means over prompts, trajectories or executed tool calls; keys whose population is empty
    (no dH measured, no tool call run) are left out rather than reported as a misleading 0."""
    trajs = [t for g in groups for t in g.trajectories]
    if not trajs:
        return {}
    lengths = [len(t) for t in trajs]
    calls = [c for t in trajs for c in own_tool_calls(t)]
    dhs = [dh for g in groups for dh in g.stats.get("dH", [])]
    out = {
        "arpo/branches_per_prompt": _mean([g.stats.get("branches", 0) for g in groups]),
        "arpo/branch_events_per_prompt": _mean([g.stats.get("branch_events", 0) for g in groups]),
        "arpo/topups_per_prompt": _mean([g.stats.get("topups", 0) for g in groups]),
        "tools/calls_per_traj": _mean([len(t.tool_calls) for t in trajs]),
        # The rollout's cost: calls run and tokens sampled (a branch's inherited prefix counts once).
        "tools/calls_executed": float(len(calls)),
        "rollout/sampled_tokens": float(sum(sum(t.loss_mask[t.fork_pos :]) for t in trajs)),
        "response_length/mean": _mean(lengths),
        "response_length/max": float(max(lengths)),
        "response_length/min": float(min(lengths)),
    }
    if dhs:
        out |= {"arpo/dH/mean": _mean(dhs), "arpo/dH/min": min(dhs), "arpo/dH/max": max(dhs)}
    if calls:
        out["tools/error_rate"] = _mean([float(c.error is not None) for c in calls])
        out["tools/latency_s"] = _mean([c.latency_s for c in calls])
        out["tools/timeout_rate"] = _mean([float(c.timed_out) for c in calls])
    return out | context_stats(groups)


def engine_metrics(engine, before: dict[str, int]) -> dict[str, float]:
    """What the engine did since its `stats` were `before`: prefix-cache reuse (vLLM), recomputed
    tokens (native), and whether the entropies ARPO branched on were exact."""
    delta = {k: v - before.get(k, 0) for k, v in engine.stats.items()}
    out = {"rollout/entropy_exact": float(getattr(engine, "exact_entropy", True))}
    if "cached_prompt_tokens" in delta:
        out["rollout/cached_prompt_tokens"] = float(delta["cached_prompt_tokens"])
        out["rollout/prefix_cache_hit_rate"] = delta["cached_prompt_tokens"] / max(1, delta["prompt_tokens"])
    if "recomputed_tokens" in delta:
        out["rollout/recomputed_tokens"] = float(delta["recomputed_tokens"])
    return out
