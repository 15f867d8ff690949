"""Random rollout trees for tests and benchmarks (no model, no tokenizer).

Every trajectory's first own token (at its fork position) is a marker unique in the group, drawn
from ids below `n_markers`; other tokens are drawn above it. So two trajectories share a response
token exactly when their token prefixes up to it are equal, which tests use as an independent
definition of sharing.
"""

from __future__ import annotations

import random

from arpo.rollout.tree import Group, Trajectory


def synthetic_group(
    rng: random.Random,
    group_id: int,
    vocab_size: int,
    n_traj: int = 6,
    n_roots: int = 2,
    prompt_len: int = 8,
    response_len: tuple[int, int] = (6, 14),
    max_depth: int = 3,
    fork_frac: tuple[float, float] = (0.1, 0.9),
    tool_prob: float = 0.5,
    n_markers: int = 64,
) -> Group:
    """A group of `n_traj` trajectories: `n_roots` global samples, the rest forked from a random
    earlier trajectory of depth < `max_depth` at a fraction `fork_frac` of its length. With
    probability `tool_prob` a trajectory's own part holds a masked (tool-result) span."""
    if n_traj > n_markers or vocab_size <= n_markers:
        raise ValueError("need n_traj <= n_markers < vocab_size")
    draw = lambda n: [rng.randrange(n_markers, vocab_size) for _ in range(n)]
    trajs: list[Trajectory] = []
    depth: list[int] = []
    for i in range(n_traj):
        candidates = [j for j in range(len(trajs)) if depth[j] < max_depth]
        parent = rng.choice(candidates) if i >= n_roots and candidates else None
        own_len = rng.randint(*response_len)
        if parent is None:
            fork, head, head_mask, head_lp = 0, [], [], []
        else:
            p = trajs[parent]
            fork = min(int(rng.uniform(*fork_frac) * len(p)), len(p) - 1)
            head, head_mask, head_lp = p.tokens[:fork], p.loss_mask[:fork], p.logprobs[:fork]
        own = [i] + draw(own_len - 1)
        mask = [1] * own_len
        if rng.random() < tool_prob and own_len > 3:
            start = rng.randrange(1, own_len - 1)
            for k in range(start, min(own_len, start + rng.randint(1, 4))):
                mask[k] = 0
        trajs.append(
            Trajectory(
                id=100 + i,
                parent=None if parent is None else 100 + parent,
                fork_pos=fork,
                tokens=head + own,
                loss_mask=head_mask + mask,
                logprobs=head_lp + [-rng.uniform(0.05, 4.0) * m for m in mask],
                entropies=[0.0] * (fork + own_len),
                reward=rng.choice([0.0, 0.0, 0.5, 1.0]),
            )
        )
        depth.append(0 if parent is None else depth[parent] + 1)
    return Group(group_id=group_id, prompt_ids=draw(prompt_len), trajectories=trajs)
