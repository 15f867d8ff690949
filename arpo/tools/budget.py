"""Token budgets on what tools put into the context, counted with the policy's tokenizer.

One result keeps at most `max_tokens` tokens: its head and its tail around a marker saying how many
tokens were cut, so a long traceback still ends with its exception line. A trajectory's results
share one budget (`rollout.max_tool_tokens`); once it is spent, a result is replaced by a notice.
"""

from __future__ import annotations

from dataclasses import dataclass

MARKER = "\n[... {cut} tokens cut ...]\n"
# Below this room a cut result says too little to be worth its tokens: the notice goes in instead.
MIN_ROOM = 24
SPENT = "[result not shown: tool-output budget of {budget} tokens spent]"


@dataclass
class Bounded:
    text: str  # what the model reads
    tokens: int  # tokens of the tool's own text, before any cut
    truncated: bool  # cut, or replaced by the spent-budget notice


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def truncate_tokens(text: str, tokenizer, max_tokens: int) -> Bounded:
    """`text` if it has at most `max_tokens` tokens, else head + marker + tail within `max_tokens`
    (the tail gets the extra token of an odd split: a result's end usually says how it ended)."""
    ids = _encode(tokenizer, text)
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return Bounded(text, len(ids), False)
    keep = max_tokens - len(_encode(tokenizer, MARKER.format(cut=len(ids))))
    while keep > 0:
        head, tail = keep // 2, keep - keep // 2
        cut = len(ids) - head - tail
        out = tokenizer.decode(ids[:head]) + MARKER.format(cut=cut) + tokenizer.decode(ids[len(ids) - tail :])
        # Decoded pieces can merge into other tokens when re-encoded: shrink until the whole fits.
        if len(_encode(tokenizer, out)) <= max_tokens:
            return Bounded(out, len(ids), True)
        keep -= 1
    return Bounded(MARKER.format(cut=len(ids)).strip(), len(ids), True)


class ResultBudget:
    """Applies `result_max_tokens` to each result and `max_tool_tokens` to a trajectory's results."""

    def __init__(self, tokenizer, result_max_tokens: int, max_tool_tokens: int):
        self.tokenizer = tokenizer
        self.result_max_tokens = result_max_tokens
        self.max_tool_tokens = max_tool_tokens

    def bound(self, text: str, used: int) -> Bounded:
        """`text` as the model reads it, given `used` result tokens already in the trajectory."""
        limit = self.result_max_tokens
        if self.max_tool_tokens > 0:
            room = self.max_tool_tokens - used
            if room < MIN_ROOM:
                tokens = len(_encode(self.tokenizer, text))
                return Bounded(SPENT.format(budget=self.max_tool_tokens), tokens, True)
            limit = min(limit, room) if limit > 0 else room
        return truncate_tokens(text, self.tokenizer, limit)

    def count(self, text: str) -> int:
        return len(_encode(self.tokenizer, text))
