"""GRPO advantages and ARPO attribution (docs/design.md, "Advantages and attribution").

Groups are keyed by the root prompt (`group_id`): Group objects sharing an id are normalised
together. A group with a single trajectory or equal rewards gets advantages of exactly 0 (no
signal). "Equal" allows rounding: a std within ZERO_STD_RTOL of the largest |reward| counts as 0
(eight rewards of 1.1 have a float std near 2e-16, which `(R - mean) / (std + eps)` would turn
into advantages of 1e-10 rather than 0).
"""

from __future__ import annotations

import math

from arpo.algo.prefix_tree import PrefixTree
from arpo.errors import ConfigError
from arpo.rollout.tree import Group

ATTRIBUTIONS = ("soft", "hard")
ZERO_STD_RTOL = 1e-6


def grpo_advantages(
    groups: list[Group], norm_by_std: bool = True, eps: float = 1e-6
) -> tuple[list[list[float]], dict[str, float]]:
    """Per group, per trajectory: `(R - mean) / (std + eps)` (or `R - mean`); std is unbiased, as in
    the GRPO reference code. Metrics: `frac_reward_zero_std` over distinct group ids."""
    rewards: dict[int, list[float]] = {}
    for g in groups:
        rewards.setdefault(g.group_id, []).extend(t.reward for t in g.trajectories)
    stats = {gid: _mean_std(rs) for gid, rs in rewards.items()}
    advantages = []
    for g in groups:
        mean, std = stats[g.group_id]
        scale = 1.0 / (std + eps) if norm_by_std else 1.0
        advantages.append([0.0 if std == 0 else (t.reward - mean) * scale for t in g.trajectories])
    zero = sum(1 for mean, std in stats.values() if std == 0)
    return advantages, {"frac_reward_zero_std": zero / max(len(stats), 1)}


def _mean_std(rewards: list[float]) -> tuple[float, float]:
    """Mean and unbiased std; the std is exactly 0 for one reward or rewards equal up to rounding."""
    mean = sum(rewards) / len(rewards)
    var = sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1) if len(rewards) > 1 else 0.0
    std = math.sqrt(var)
    return mean, 0.0 if std <= ZERO_STD_RTOL * max(abs(r) for r in rewards) else std


def token_advantages(tree: PrefixTree, traj_adv: list[float], attribution: str) -> list[list[float]]:
    """Advantage of every response token of every trajectory. `soft`: the trajectory's own; `hard`:
    the mean advantage of the trajectories that share the token (pass through its node)."""
    if attribution == "soft":
        return [[a] * len(nodes) for a, nodes in zip(traj_adv, tree.traj_nodes)]
    if attribution != "hard":
        raise ConfigError(
            f"attribution {attribution!r} is not valid; choose one of {', '.join(ATTRIBUTIONS)}"
        )
    total = [0.0] * len(tree)
    count = [0] * len(tree)
    for a, nodes in zip(traj_adv, tree.traj_nodes):
        for u in nodes:
            total[u] += a
            count[u] += 1
    return [[total[u] / count[u] for u in nodes] for nodes in tree.traj_nodes]
