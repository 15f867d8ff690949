"""Entropy around tool results, from trajectory records (plain dicts, as `trajectories.jsonl` holds
them): `entropies` and `loss_mask` per response token, and `calls`, each with its `tool` and the
response-token span `[start, end)` of its inserted result.

Offsets are counted in response tokens relative to a result: offset -1 is the last token before it
(the token that closes the call), offset 0 the first token after it. The result's own tokens carry
no entropy and are skipped, as is any token of another result inside the window (loss mask 0).
"""

from __future__ import annotations

from collections import defaultdict

LO, HI = -30, 60  # the picture's span of offsets


def _index(call: dict, offset: int) -> int:
    return call["start"] + offset if offset < 0 else call["end"] + offset


def _generated(record: dict, i: int) -> bool:
    return 0 <= i < len(record["entropies"]) and record["loss_mask"][i] == 1


def window_entropies(record: dict, call: dict, k: int) -> tuple[list[float], list[float]]:
    """Entropies of the generated tokens among the `k` that close the call (offsets -k..-1) and
    among the first `k` after its result (offsets 0..k-1)."""
    before = [
        record["entropies"][i] for i in range(call["start"] - k, call["start"]) if _generated(record, i)
    ]
    after = [record["entropies"][i] for i in range(call["end"], call["end"] + k) if _generated(record, i)]
    return before, after


def entropy_profile(records: list[dict], lo: int = LO, hi: int = HI) -> dict[str, dict]:
    """Per tool (and `all`): `offsets` lo..hi, the `mean` entropy at each offset (None where no
    token lies), the token `count` there, and the number of `calls`."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * (hi - lo + 1))
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * (hi - lo + 1))
    calls: dict[str, int] = defaultdict(int)
    for record in records:
        for call in record["calls"]:
            for tool in ("all", call["tool"]):
                calls[tool] += 1
                for j, offset in enumerate(range(lo, hi + 1)):
                    i = _index(call, offset)
                    if _generated(record, i):
                        sums[tool][j] += record["entropies"][i]
                        counts[tool][j] += 1
    return {
        tool: {
            "offsets": list(range(lo, hi + 1)),
            "mean": [s / n if n else None for s, n in zip(sums[tool], counts[tool])],
            "count": counts[tool],
            "calls": calls[tool],
        }
        for tool in sorted(calls, key=lambda t: (t != "all", t))
    }


def split_phases(records: list[dict]) -> dict[str, list[dict]]:
    """`first` and `last` steps of a training run (a quarter of the logged steps each, at least
    one); records without a step (an evaluation) form one phase, `eval`."""
    steps = sorted({r["step"] for r in records if r.get("step") is not None})
    if not steps:
        return {"eval": records}
    n = max(1, len(steps) // 4)
    first, last = set(steps[:n]), set(steps[-n:])
    return {
        f"first steps ({_span(steps[:n])})": [r for r in records if r.get("step") in first],
        f"last steps ({_span(steps[-n:])})": [r for r in records if r.get("step") in last],
    }


def _span(steps: list[int]) -> str:
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
