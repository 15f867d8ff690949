"""The contract between rollout engines (native paged sampler, vLLM) and the ARPO rollout.

An engine owns sequences identified by integer ids. `step()` advances every runnable sequence by
one token (prefilling whatever it has not computed yet first) and reports what happened. A
sequence that hits a stop string or stop token *pauses* (keeps its KV cache) so that the caller
can append a tool result with `resume` or end it with `release`; EOS and the token budget
*finish* it (its KV blocks are freed, its record stays readable until `release`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    max_new_tokens: int = 256  # counts generated tokens only (appended tool tokens do not count)
    stop_token_ids: list[int] = field(default_factory=list)  # pause after emitting one of these
    stop: list[str] = field(default_factory=list)  # pause once the generated text ends with one
    eos_token_ids: list[int] = field(default_factory=list)  # finish after emitting one of these
    seed: int | None = None  # per-sequence generator; None draws from the engine's generator


@dataclass
class TokenEvent:
    """One sampled token of one sequence, as reported by `step()`."""

    seq_id: int
    token_id: int
    logprob: float  # log-prob under the sampling distribution's temperature, before top-p/top-k
    entropy: float  # full-vocabulary entropy of the same distribution
    status: str  # "running" | "paused" (stop string/token hit) | "finished"
    finish_reason: str | None = None  # "stop" (paused) | "eos" | "length" when not running


class RolloutEngine(Protocol):
    """Everything the ARPO rollout and the trainer use of an engine. Both engines inherit the shared
    per-sequence bookkeeping (`resume`, `pause`, `status`, `has_runnable`, `token_ids`) from
    `engine_common.SequenceBook`."""

    vocab_size: int  # rows of the model's output layer: token ids must lie below it
    exact_entropy: bool  # whether `TokenEvent.entropy` is the full-vocabulary entropy (else estimated)
    stats: dict[str, int]  # running counters (steps, sampled tokens, forks, ...), never reset

    def add(self, prompt_ids: list[int], params: SamplingParams) -> int:
        """Queue a new sequence; returns its id."""

    def step(self) -> list[TokenEvent]:
        """Advance every runnable sequence by one token."""

    def resume(self, seq_id: int, token_ids: list[int], params: SamplingParams | None = None) -> None:
        """Append tokens (a tool result) to a paused sequence; they are prefilled on the next step."""

    def fork(
        self, seq_id: int, n: int, num_tokens: int | None = None, seeds: list[int | None] | None = None
    ) -> list[int]:
        """`n` children sharing the first `num_tokens` tokens (default: all) of `seq_id`'s
        prompt+response; each then samples its own continuation. Shares KV blocks; nothing of
        the shared prefix is recomputed. Children start paused=False (runnable)."""

    def release(self, seq_id: int) -> None:
        """Forget a sequence and free its blocks."""

    def has_runnable(self) -> bool:
        """Whether `step()` would advance any sequence."""

    def token_ids(self, seq_id: int) -> list[int]:
        """Prompt + response token ids of a sequence, exactly as sampled/appended."""

    def status(self, seq_id: int) -> tuple[str, str | None]:
        """(status, finish_reason) of a sequence."""

    def pause(self, seq_id: int) -> None:
        """Take a running sequence out of the batch, as a stop would (its KV stays cached)."""

    def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load (name, full tensor) pairs in Hugging Face naming; consumed once, tensor by tensor.
        No sequence may be live."""

    def sleep(self) -> None:
        """Free what memory the engine can while the trainer updates; `update_weights` wakes it."""

    def close(self) -> None:
        """Shut down now (idempotent)."""
