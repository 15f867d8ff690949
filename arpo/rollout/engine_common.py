"""What the rollout engines share, so both accept the same input and pause at exactly the same
token: input checks, the fork-point rule, stop-string matching, and `SequenceBook`, the per-sequence
bookkeeping (status, resume, the finish/pause decision) both engines inherit."""

from __future__ import annotations

from typing import Any

from arpo.errors import ArpoError

from .interface import SamplingParams


def check_tokens(ids: list[int], vocab_size: int, what: str) -> None:
    if ids and not all(0 <= i < vocab_size for i in ids):
        raise ArpoError(f"{what} token ids must lie in [0, {vocab_size})")


def check_params(params: SamplingParams, tokenizer) -> None:
    if params.max_new_tokens < 1:
        raise ArpoError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}")
    if params.stop and tokenizer is None:
        raise ArpoError("stop strings need the engine to be given a tokenizer")
    if not 0 < params.top_p <= 1 or params.top_k < 0 or params.temperature < 0:
        raise ArpoError(
            f"bad sampling params: temperature={params.temperature}, top_p={params.top_p}, "
            f"top_k={params.top_k}"
        )


def fork_point(seq_id: int, length: int, n: int, num_tokens: int | None, seeds: list | None) -> int:
    """The validated number of leading tokens `n` children of a `length`-token sequence share."""
    t = length if num_tokens is None else num_tokens
    if not 1 <= t <= length:
        raise ArpoError(f"fork point {t} is outside sequence {seq_id}'s 1..{length} tokens")
    if n < 1 or (seeds is not None and len(seeds) != n):
        raise ArpoError(f"fork needs n >= 1 and one seed per child, got n={n}, {seeds}")
    return t


def ends_at_stop_string(tokenizer, tokens: list[int], turn_start: int, stops: list[str]) -> bool:
    """Whether a stop string ends inside the last token's text (a token may carry characters past
    it, e.g. `>\\n` closing a tag). Only text from `turn_start` on (this turn's output) is matched."""
    if not stops:
        return False
    # Only for matching: a window of recent tokens longer than any stop string in characters.
    window = max(len(s) for s in stops) + 8
    tail = tokens[max(turn_start, len(tokens) - window) :]
    text = tokenizer.decode(tail, skip_special_tokens=False)
    before = len(tokenizer.decode(tail[:-1], skip_special_tokens=False))
    return any((i := text.rfind(s)) != -1 and i + len(s) > before for s in stops)


class SequenceBook:
    """The bookkeeping both engines share over `self.sequences` (id -> a record with `tokens`,
    `generated`, `params`, `turn_start`, `status`, `finish_reason`, `num_generated`). An engine sets
    `sequences`, `tokenizer` and `vocab_size`, and may extend the hooks `_set_params` (a resumed
    sequence gets new params), `_on_pause`, `_on_resume` and `_on_finish`."""

    sequences: dict[int, Any]
    tokenizer: Any
    vocab_size: int
    exact_entropy: bool = True

    def _check_new(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if not prompt_ids:
            raise ArpoError("cannot add an empty prompt")
        check_tokens(prompt_ids, self.vocab_size, "prompt")
        check_params(params, self.tokenizer)

    def resume(self, seq_id: int, token_ids: list[int], params: SamplingParams | None = None) -> None:
        seq = self._get(seq_id)
        if seq.status != "paused":
            raise ArpoError(f"sequence {seq_id} is {seq.status}, only a paused sequence can be resumed")
        check_tokens(token_ids, self.vocab_size, "appended")
        if params is not None:
            check_params(params, self.tokenizer)
            self._set_params(seq, params)
        seq.tokens += token_ids
        seq.generated += [False] * len(token_ids)
        seq.status, seq.finish_reason = "running", None
        seq.turn_start = len(seq.tokens)
        self._on_resume(seq)

    def pause(self, seq_id: int) -> None:
        """Take a running sequence out of the batch, as a stop would (its KV stays cached)."""
        seq = self._get(seq_id)
        if seq.status != "running":
            raise ArpoError(f"sequence {seq_id} is {seq.status}, only a running sequence can be paused")
        self._on_pause(seq)
        seq.status, seq.finish_reason = "paused", "stop"

    def has_runnable(self) -> bool:
        return any(s.status == "running" for s in self.sequences.values())

    def token_ids(self, seq_id: int) -> list[int]:
        return list(self._get(seq_id).tokens)

    def status(self, seq_id: int) -> tuple[str, str | None]:
        """(status, finish_reason) of a sequence."""
        seq = self._get(seq_id)
        return seq.status, seq.finish_reason

    def _update_status(self, seq, token: int) -> None:
        """After `token` was sampled: EOS or the token budget finish the sequence; a stop token or
        a stop string pauses it."""
        p = seq.params
        if token in p.eos_token_ids or seq.num_generated >= p.max_new_tokens:
            seq.status, seq.finish_reason = "finished", "eos" if token in p.eos_token_ids else "length"
            self._on_finish(seq)
        elif token in p.stop_token_ids or ends_at_stop_string(
            self.tokenizer, seq.tokens, seq.turn_start, p.stop
        ):
            seq.status, seq.finish_reason = "paused", "stop"

    def _get(self, seq_id: int):
        if seq_id not in self.sequences:
            raise ArpoError(f"unknown sequence id {seq_id}")
        return self.sequences[seq_id]

    def _set_params(self, seq, params: SamplingParams) -> None:
        seq.params = params

    def _on_pause(self, seq) -> None:
        """Called before a running sequence is paused by `pause`."""

    def _on_resume(self, seq) -> None:
        """Called after tokens were appended to a resumed sequence."""

    def _on_finish(self, seq) -> None:
        """Called when a sequence finishes (EOS or its token budget)."""
