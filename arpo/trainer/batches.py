"""Which prompts a step trains on: a seeded permutation per epoch, a function of the step alone
(so a resumed run sees exactly the prompts the uninterrupted one would), split across ranks in
whole groups."""

from __future__ import annotations

import random

from arpo.data import Example


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


def prompt_ids(tokenizer, example: Example) -> list[int]:
    """Chat-formatted prompt ids; rendered to text then encoded once (no special tokens added twice)."""
    text = tokenizer.apply_chat_template(example.prompt_messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False).input_ids)
