"""`arpo analyze RUN_DIR`: the entropy-around-tool-results picture of a run (`entropy.png`), its
numbers (`entropy_profile.json`) and a console table, from the run's `trajectories.jsonl` (or an
evaluation's `trajectories_<benchmark>.jsonl`)."""

from __future__ import annotations

import json
import os

from arpo.analysis.entropy import entropy_profile, split_phases
from arpo.analysis.records import FILE, entropy_metrics, read_records
from arpo.errors import ArpoError


def profiles(records: list[dict]) -> dict[str, dict[str, dict]]:
    """Phase (first / last steps, or eval) -> tool -> profile."""
    return {phase: entropy_profile(rs) for phase, rs in split_phases(records).items()}


def window_mean(profile: dict, lo: int, hi: int) -> float | None:
    """Token-weighted mean entropy over offsets lo..hi-1 of one profile."""
    pairs = [
        (m, n) for o, m, n in zip(profile["offsets"], profile["mean"], profile["count"]) if lo <= o < hi and n
    ]
    tokens = sum(n for _, n in pairs)
    return sum(m * n for m, n in pairs) / tokens if tokens else None


def plot_profiles(by_phase: dict[str, dict[str, dict]], path: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = list(dict.fromkeys(t for p in by_phase.values() for t in p))
    fig, axes = plt.subplots(1, len(tools), figsize=(5 * len(tools), 3.8), squeeze=False, sharey=True)
    for ax, tool in zip(axes[0], tools):
        for phase, by_tool in by_phase.items():
            if tool in by_tool:
                prof = by_tool[tool]
                pts = [(o, m) for o, m in zip(prof["offsets"], prof["mean"]) if m is not None]
                ax.plot(*zip(*pts), label=f"{phase}: {prof['calls']} calls")
        ax.axvline(0, color="gray", ls="--", lw=1)
        ax.set_title(f"{tool} (result between -1 and 0)")
        ax.set_xlabel("tokens relative to the tool result")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean token entropy (nats)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def find_records(path: str) -> str:
    """`path` itself (a JSONL file) or the run directory's `trajectories.jsonl`."""
    if os.path.isfile(path):
        return path
    candidate = os.path.join(path, FILE)
    if os.path.isfile(candidate):
        return candidate
    raise ArpoError(
        f"no {FILE} in {path!r}: training writes it when trainer.log_trajectories > 0, "
        f"`arpo eval` writes trajectories_<benchmark>.jsonl under eval.out"
    )


def picture_stem(records_path: str) -> str:
    """`trajectories.jsonl` -> `entropy`, `trajectories_gsm8k.jsonl` -> `entropy_gsm8k`, same folder."""
    folder, name = os.path.split(os.path.abspath(records_path))
    return os.path.join(folder, name.removesuffix(".jsonl").replace("trajectories", "entropy", 1))


def analyze(path: str, k: int = 20, out: str = "") -> dict:
    """Write the picture and the numbers beside the records; print a table; return the numbers."""
    source = find_records(path)
    records = read_records(source)
    if not any(r["calls"] for r in records):
        raise ArpoError(f"{source}: no trajectory there made a tool call; nothing to draw")
    by_phase = profiles(records)
    stem = out or picture_stem(source)
    png = plot_profiles(by_phase, stem + ".png", f"token entropy around tool results: {source}")
    with open(stem + "_profile.json", "w") as f:
        json.dump(by_phase, f)
    print(f"{'phase':<24} {'tool':<10} {'calls':>6} {f'H[-{k},0)':>10} {f'H[0,{k})':>10}")
    for phase, by_tool in by_phase.items():
        for tool, prof in by_tool.items():
            before, after = window_mean(prof, -k, 0), window_mean(prof, 0, k)
            print(f"{phase:<24} {tool:<10} {prof['calls']:>6} {_fmt(before):>10} {_fmt(after):>10}")
    print(f"picture: {png}")
    return by_phase


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def eval_entropy(groups, k: int, records_path: str) -> dict:
    """An evaluation's entropy numbers (`entropy_before_call`, `entropy_after_result`, mean `dH`)
    and, when a tool was called, its picture beside the records (`entropy_<benchmark>.png`)."""
    out = entropy_metrics(groups, k, prefix="")
    dhs = [dh for g in groups for dh in g.stats.get("dH", [])]
    if dhs:
        out["dH"] = sum(dhs) / len(dhs)
    records = read_records(records_path)
    if any(r["calls"] for r in records):
        stem = picture_stem(records_path)
        plot_profiles(profiles(records), stem + ".png", f"token entropy around tool results: {records_path}")
    return out
