"""End-of-run artefacts: a PNG of the training curves (reward, held-out accuracy, loss, gradient
norm, entropy, response length, tool calls, branches and step time against the step), and a short
summary (Markdown and JSON) with the held-out accuracy and tool-call rate before and after."""

from __future__ import annotations

import json
import os

# (metric, panel title, y-axis label); held-out rows are drawn as points, training rows as lines.
PANELS = [
    ("reward/mean", "training reward", "mean reward"),
    ("val/accuracy", "held-out accuracy", "accuracy"),
    ("actor/pg_loss", "policy loss", "loss"),
    ("actor/grad_norm", "gradient norm", "norm (before clipping)"),
    ("actor/entropy", "policy entropy", "nats / token"),
    ("response_length/mean", "response length", "tokens"),
    ("tools/calls_per_traj", "tool calls", "calls / trajectory"),
    ("arpo/branches_per_prompt", "ARPO branches", "branches / prompt"),
    ("timing_s/step", "step time", "seconds"),
]


def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _draw(ax, rows: list[dict], key: str, title: str, ylabel: str) -> None:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if pts:
        # Held-out accuracy is measured at a few steps: points, not a line that invents the between.
        style = (
            {"linestyle": "none", "marker": "s", "ms": 6}
            if key.startswith("val/")
            else {"marker": "o", "ms": 3}
        )
        ax.plot(*zip(*pts), **style)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def training_figure(rows: list[dict]):
    """The figure of `plot_metrics`, one panel per entry of PANELS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(14, 10))
    for ax, (key, title, ylabel) in zip(axes.flat, PANELS):
        _draw(ax, rows, key, title, ylabel)
    fig.tight_layout()
    return fig


def plot_metrics(run_dir: str) -> str:
    import matplotlib.pyplot as plt

    fig = training_figure(read_metrics(run_dir))
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
