"""BFCL results: per-category numbers, the two overall scores, the console tables.

Per category: entries, accuracy (BFCL's verdicts), calls per entry, invalid-format rate (entries
whose answer should have held calls that BFCL's decoder could not read; multi-turn: entries
where no answer held a call; irrelevance entries do not count), wall time, and how the answers'
prompts reached the engine (`kv_cache`: continuing their conversation's cached sequence, or not,
see generate.py). Overall: the
unweighted mean over the categories run, and BFCL's leaderboard weighting of them (see
categories.py) with the categories it counts that were not run named.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from arpo.eval.bfcl.categories import weighted_overall
from arpo.eval.bfcl.generate import APPENDED, CACHE_PATHS, DIVERGED, RESTARTED, SHARED, STARTED


def category_metrics(records: list[dict], wall_time_s: float) -> dict:
    n = max(1, len(records))
    formats = [r["invalid_format"] for r in records if r["invalid_format"] is not None]
    return {
        "entries": len(records),
        "accuracy": sum(r["valid"] for r in records) / n,
        "calls_per_entry": sum(r["calls"] for r in records) / n,
        "invalid_format_rate": sum(formats) / len(formats) if formats else None,
        "wall_time_s": wall_time_s,
        "kv_cache": cache_use(records),
    }


def cache_use(records: list[dict]) -> dict:
    """Answers by how their prompt reached the engine, and the prompt tokens whose cache was reused."""
    steps = [s for r in records for s in r["steps"] if "kv_cache" in s]
    return {
        "answers": len(steps),
        **{how: sum(s["kv_cache"] == how for s in steps) for how in CACHE_PATHS},
        "prompt_tokens": sum(s["prompt_tokens"] for s in steps),
        "reused_tokens": sum(s["reused_tokens"] for s in steps),
    }


def cache_note(category: str, use: dict) -> str | None:
    """One line on the answers' cache reuse, for categories where any prompt reused a cached part."""
    later = use["answers"] - use[STARTED] - use[SHARED]
    if not later and not use[SHARED]:
        return None
    share = use["reused_tokens"] / max(1, use["prompt_tokens"])
    return (
        f"  {category}: {use[SHARED]} conversations started from another's cached prefix; "
        f"{later} answers after a conversation's first: {use[APPENDED]} appended to its "
        f"cached sequence, {use[DIVERGED]} forked where the prompt differed from it, {use[RESTARTED]} "
        f"prefilled afresh; {100 * share:.0f}% of all prompt tokens came from the cache"
    )


def overall(categories: dict[str, dict]) -> dict:
    weighted, left_out = weighted_overall(categories)
    return {
        "unweighted": sum(m["accuracy"] for m in categories.values()) / max(1, len(categories)),
        "bfcl_weighted": weighted,
        "left_out": left_out,
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def results_table(summary: dict) -> Table:
    table = Table(
        title=f"BFCL: {summary['model']}", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True
    )
    table.add_column("category", no_wrap=True)
    for col in ("n", "acc %", "calls/entry", "invalid %", "wall s"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, m in summary["categories"].items():
        table.add_row(
            name,
            str(m["entries"]),
            _pct(m["accuracy"]),
            f"{m['calls_per_entry']:.2f}",
            _pct(m["invalid_format_rate"]),
            f"{m['wall_time_s']:.1f}",
        )
    return table


def print_results(summary: dict, console: Console) -> None:
    console.print(results_table(summary))
    o = summary["overall"]
    console.print(f"overall, unweighted mean of the categories run: {_pct(o['unweighted'])}%")
    console.print(
        f"overall, BFCL's weighting of the categories run: {_pct(o['bfcl_weighted'])}%"
        + (f" (left out: {', '.join(o['left_out'])})" if o["left_out"] else "")
    )


def comparison_table(summaries: dict[str, dict]) -> Table:
    """Side by side: one column per model, one row per category, then the two overalls."""
    table = Table(title="BFCL accuracy %", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    table.add_column("category", no_wrap=True)
    for label in summaries:
        table.add_column(label, justify="right")
    categories = list(dict.fromkeys(c for s in summaries.values() for c in s["categories"]))
    for c in categories:
        table.add_row(
            c,
            *(
                _pct(s["categories"][c]["accuracy"]) if c in s["categories"] else "-"
                for s in summaries.values()
            ),
        )
    table.add_row("overall (unweighted)", *(_pct(s["overall"]["unweighted"]) for s in summaries.values()))
    table.add_row(
        "overall (BFCL weights)", *(_pct(s["overall"]["bfcl_weighted"]) for s in summaries.values())
    )
    table.add_row("call format", *(s["call_format"] for s in summaries.values()))
    return table
