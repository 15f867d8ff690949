"""ARPO's entropy-based branching rule (docs/design.md, "Rollout rules"), as pure functions.

`H_init` and `H_t` are means of full-vocabulary per-token entropies; the change is normalised by
the largest possible entropy, `log V`, so `dH` lies in [-1, 1] whatever the vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from arpo.errors import ConfigError


def mean_entropy(entropies: Sequence[float]) -> float:
    if not entropies:
        raise ValueError("mean entropy of no tokens")
    return float(sum(entropies)) / len(entropies)


def entropy_delta(h_t: float, h_init: float, vocab_size: int) -> float:
    """dH = (H_t - H_init) / log(V)."""
    if vocab_size < 2:
        raise ConfigError(f"vocabulary size must be at least 2, got {vocab_size}")
    return (h_t - h_init) / math.log(vocab_size)


def branch_score(dh: float, alpha: float, beta: float) -> float:
    """P = alpha + beta * dH."""
    return alpha + beta * dh


def should_branch(p: float, rule: str, tau: float, rng: np.random.Generator) -> bool:
    """`threshold` (paper): P > tau. `sample` (official code): a draw with probability clip(P, 0, 1).

    The threshold rule never draws, so the RNG's state only matters for `sample`.
    """
    if rule == "threshold":
        return p > tau
    return bool(rng.random() < min(max(p, 0.0), 1.0))  # `sample`; the config tree checks the choice


def derived_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for (seed, *keys), so that every sequence and every branching
    decision draws from its own stream and results do not depend on the engine's scheduling order."""
    state = np.random.SeedSequence([seed & (2**63 - 1), *keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def decision_rng(seed: int, group: int, traj: int, call: int) -> np.random.Generator:
    """The RNG of the branching decision after tool call `call` of trajectory `traj` of `group`."""
    return np.random.default_rng(np.random.SeedSequence([seed & (2**63 - 1), group, traj, call, 1]))
