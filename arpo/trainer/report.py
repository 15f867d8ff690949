"""End-of-run artefacts: a PNG of reward, entropy, tool calls and branches over steps, and a short
summary (Markdown and JSON) with the held-out accuracy and tool-call rate before and after."""

from __future__ import annotations

import json
import os

PANELS = [
    ("reward/mean", "reward"),
    ("actor/entropy", "entropy"),
    ("tools/calls_per_traj", "tool calls / trajectory"),
    ("arpo/branches_per_prompt", "branches / prompt"),
]


def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(run_dir: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, title) in zip(axes.flat, PANELS):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3)
        val = [
            (r["step"], r["val/accuracy"])
            for r in rows
            if key == "reward/mean" and r.get("val/accuracy") is not None
        ]
        if val:
            ax.plot(*zip(*val), marker="s", ms=4, label="held-out accuracy")
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(run_dir, "training.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_summary(run_dir: str, summary: dict) -> str:
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    before, after = summary.get("eval_before", {}), summary.get("eval_after", {})
    lines = [
        f"# arpo run: {os.path.basename(os.path.abspath(run_dir))}",
        "",
        f"model {summary.get('model')}, task {summary.get('task')}, {summary.get('steps')} steps, "
        f"{summary.get('wall_time_s', 0) / 60:.1f} min",
        "",
        "| held-out | before | after |",
        "|---|---|---|",
    ]
    for key in ("accuracy", "tool_call_rate", "calls_per_question", "response_length"):
        if key in before or key in after:
            lines.append(
                f"| {key} | {before.get(key, float('nan')):.3f} | {after.get(key, float('nan')):.3f} |"
            )
    lines += ["", f"final checkpoint: {summary.get('checkpoint')}", ""]
    path = os.path.join(run_dir, "summary.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
