"""What the rollout engines share, so both accept the same input and pause at exactly the same token."""

from __future__ import annotations

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
