"""The engine's record of one sequence."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from arpo.rollout.interface import SamplingParams


@dataclass
class Sequence:
    seq_id: int
    tokens: list[int]
    params: SamplingParams
    generator: torch.Generator | None  # None: the engine's generator
    arrival: int  # scheduling order: earlier sequences are served first and preempted last
    generated: list[bool] = field(default_factory=list)  # per token: sampled (True) or prompt/appended
    status: str = "running"  # "running" | "paused" | "finished"
    finish_reason: str | None = None
    num_computed: int = 0  # leading tokens whose K/V are in the cache
    recompute_until: int = 0  # tokens below this were computed once already: computing them again counts
    turn_start: int = 0  # stop strings match only text generated from this token on
    in_prefill: bool = True  # the next computation ends a prefill (prompt, resume, fork): keep its logits
    # Logits predicting token `length`, kept at prefill ends, so a fork there recomputes nothing.
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    num_generated: int = field(init=False)  # kept as tokens are sampled: summing per token is quadratic

    def __post_init__(self):
        if not self.generated:
            self.generated = [False] * len(self.tokens)
        self.num_generated = sum(self.generated)

    def drop_cache(self) -> None:
        """Forget the K/V state (after the block manager freed the blocks)."""
        self.recompute_until = max(self.recompute_until, self.num_computed)
        self.num_computed = 0
        self.in_prefill = True
        self.snapshots.clear()
