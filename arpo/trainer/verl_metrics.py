"""A step's metrics under the names verl logs, beside the project's own, so that dashboards and
habits made for verl carry over:

    critic/score/{mean,max,min}         the reward of each trajectory
    critic/advantages/{mean,max,min}    per loss token (tool-result tokens carry none)
    prompt_length/{mean,max,min}        prompt tokens per trajectory
    response_length/clip_ratio          share of trajectories cut by the response-token budget
    num_turns/{mean,max,min}            chat turns: the prompt, each assistant turn and each tool
                                        result (2 * calls + 2 for an answer after `calls` calls)
"""

from __future__ import annotations

from arpo.rollout.tree import Group


def _spread(name: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"{name}/mean": sum(values) / len(values), f"{name}/max": max(values), f"{name}/min": min(values)}


def verl_metrics(groups: list[Group], advantages: list[list[float]]) -> dict[str, float]:
    """`advantages[g][i]`: trajectory i of group g's advantage (one value for all its tokens)."""
    trajs = [t for g in groups for t in g.trajectories]
    if not trajs:
        return {}
    token_advantages = [
        a for g, adv in zip(groups, advantages) for t, a in zip(g.trajectories, adv) for m in t.loss_mask if m
    ]
    return {
        **_spread("critic/score", [t.reward for t in trajs]),
        **_spread("critic/advantages", token_advantages),
        **_spread("prompt_length", [float(len(g.prompt_ids)) for g in groups for _ in g.trajectories]),
        "response_length/clip_ratio": sum(t.finish_reason == "length" for t in trajs) / len(trajs),
        **_spread("num_turns", [2.0 * len(t.tool_calls) + 2.0 for t in trajs]),
    }
