"""BFCL's categories as `eval.data=bfcl:...` names them, and how its leaderboard weighs them.

Names are BFCL's own (v4). Groups: `offline` (every category scored without the network, which
is every supported one), `single_turn`, `non_live`, `live`, `multi_turn`. Not supported: the
agentic categories (web search needs the network; memory needs a sentence-embedding model) and
the unscored format-sensitivity set.

The leaderboard's overall score weighs five parts: non-live AST 10 (unweighted mean of simple,
multiple, parallel, parallel_multiple, where simple is the mean of Python, Java, JavaScript),
live AST 10 (mean over entries of the four live AST categories), hallucination 10 (mean of
irrelevance and live_irrelevance), multi-turn 30 (mean of its four categories), agentic 40.
`weighted_overall` applies that tree to the categories run: a part or sub-part with no category
run is left out and the remaining weights are renormalised; what was left out is named.
"""

from __future__ import annotations

from dataclasses import dataclass

from arpo.data.example import DataError

NON_LIVE = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple")
LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
RELEVANCE = ("irrelevance", "live_irrelevance", "live_relevance")
MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
SUPPORTED = NON_LIVE + LIVE + RELEVANCE + MULTI_TURN
UNSUPPORTED = {
    "web_search_base": "needs the network",
    "web_search_no_snippet": "needs the network",
    "memory_kv": "agentic memory is not supported",
    "memory_vector": "needs a sentence-embedding model",
    "memory_rec_sum": "agentic memory is not supported",
    "format_sensitivity": "not scored by BFCL",
}
GROUPS = {
    "offline": SUPPORTED,
    "single_turn": NON_LIVE + ("irrelevance",) + LIVE + ("live_irrelevance", "live_relevance"),
    "non_live": NON_LIVE + ("irrelevance",),
    "live": LIVE + ("live_irrelevance", "live_relevance"),
    "multi_turn": MULTI_TURN,
}
PREFIX = "bfcl:"


def kind(category: str) -> str:
    """ "multi_turn" (executed on simulated APIs), "relevance" (call or no call), or "ast"."""
    if category in MULTI_TURN:
        return "multi_turn"
    return "relevance" if category in RELEVANCE else "ast"


def parse(spec: str) -> list[str]:
    """`bfcl:a,b,group` (or a list of such names) -> distinct category names, in order."""
    names = [n.strip() for n in spec.removeprefix(PREFIX).split(",") if n.strip()]
    if not names:
        raise DataError(f"'{PREFIX}' names no category; e.g. bfcl:simple_python,irrelevance or bfcl:offline")
    out: list[str] = []
    for name in names:
        if name in UNSUPPORTED:
            raise DataError(f"BFCL category '{name}' is not supported ({UNSUPPORTED[name]})")
        if name not in SUPPORTED and name not in GROUPS:
            raise DataError(
                f"unknown BFCL category '{name}'; choose from {', '.join(SUPPORTED)} "
                f"or a group ({', '.join(GROUPS)})"
            )
        out.extend(c for c in GROUPS.get(name, (name,)) if c not in out)
    return out


@dataclass
class Part:
    """A node of the leaderboard's score tree: a category (leaf) or a mean of parts."""

    name: str
    weight: float = 1.0
    parts: tuple = ()
    by_entries: bool = False  # mean over entries (count-weighted) instead of over parts


LEADERBOARD = Part(
    "overall",
    parts=(
        Part(
            "non_live",
            10,
            (
                Part("simple", parts=(Part("simple_python"), Part("simple_java"), Part("simple_javascript"))),
                Part("multiple"),
                Part("parallel"),
                Part("parallel_multiple"),
            ),
        ),
        Part("live", 10, tuple(Part(c) for c in LIVE), by_entries=True),
        Part("hallucination", 10, (Part("irrelevance"), Part("live_irrelevance"))),
        Part("multi_turn", 30, tuple(Part(c) for c in MULTI_TURN)),
        Part("agentic", 40, (Part("web_search"), Part("memory"))),
    ),
)


def _score(part: Part, results: dict[str, dict], left_out: list[str]) -> tuple[float, int] | None:
    """(accuracy, entries) of a part over the categories run; None when none of it was run."""
    if not part.parts:
        if part.name in results:
            return results[part.name]["accuracy"], results[part.name]["entries"]
        left_out.append(part.name)
        return None
    scored = [(p, s) for p in part.parts if (s := _score(p, results, left_out)) is not None]
    if not scored:
        return None
    entries = sum(s[1] for _, s in scored)
    if part.by_entries:
        return sum(s[0] * s[1] for _, s in scored) / max(1, entries), entries
    weight = sum(p.weight for p, _ in scored)
    return sum(p.weight * s[0] for p, s in scored) / weight, entries


def weighted_overall(results: dict[str, dict]) -> tuple[float, list[str]]:
    """BFCL's weighted overall over the categories in `results` (each with `accuracy` and
    `entries`), and the scored categories or parts left out. live_relevance is reported but,
    as on the leaderboard, not part of the overall."""
    left_out: list[str] = []
    score = _score(LEADERBOARD, results, left_out)
    return (score[0] if score else 0.0), left_out
