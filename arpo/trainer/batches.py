"""Which prompts a step trains on: a seeded permutation per epoch, a function of the step alone
(so a resumed run sees exactly the prompts the uninterrupted one would), split across ranks in
whole groups."""

from __future__ import annotations

import random


def step_indices(step: int, prompts_per_step: int, num_examples: int, seed: int) -> list[int]:
    """Global example indices of `step` (all ranks)."""
    out = []
    for i in range(step * prompts_per_step, (step + 1) * prompts_per_step):
        epoch, pos = divmod(i, num_examples)
        order = list(range(num_examples))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.append(order[pos])
    return out


def rank_slice(items: list, rank: int, world: int) -> list:
    per = len(items) // world
    return items[rank * per : (rank + 1) * per]
