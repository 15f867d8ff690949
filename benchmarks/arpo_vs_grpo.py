"""The ARPO-versus-GRPO study on the embedded default, and SmolLM2 as shipped on GSM8K.

    python -m benchmarks.arpo_vs_grpo [--seeds 0 1 2] [--steps 16] [--gsm8k 50]

Trains SmolLM2-135M-Instruct on the built-in `arith` task with ARPO (M=8 trajectories per prompt,
N=4 global samples, the rest branches) and with GRPO (N=M=8) at the same rollout budget, once per
seed; each run evaluates the held-out split before and after. Then evaluates the untrained model on
a subset of ARPO's GSM8K test set with and without the Python tool. Prints a table, writes a plot
and appends both to benchmarks/RESULTS.md, whichever way the numbers come out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import append_result, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {"ARPO": ["rollout.M=8", "rollout.N=4"], "GRPO": ["rollout.M=8", "rollout.N=8"]}


def run(args: list[str], threads: int | None = None) -> None:
    print("$", " ".join(args), flush=True)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    subprocess.run(args, cwd=ROOT, check=True, env=env, stdout=subprocess.DEVNULL)


def train(method: str, seed: int, steps: int, out: str, threads: int | None = None) -> dict:
    run_dir = os.path.join(out, f"{method.lower()}-seed{seed}")
    t0 = time.time()
    run(
        [
            sys.executable,
            "-m",
            "arpo",
            "train",
            "configs/default.yaml",
            *METHODS[method],
            f"seed={seed}",
            f"data.seed={seed}",
            f"trainer.steps={steps}",
            "trainer.save_every=0",
            "trainer.wandb=disabled",
            "trainer.resume=never",
            f"run_dir={run_dir}",
        ]
    )
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    steps_rows = [r for r in rows if "actor/pg_loss" in r]
    return {
        "method": method,
        "seed": seed,
        "before": summary["eval_before"]["accuracy"],
        "after": summary["eval_after"]["accuracy"],
        "calls_before": summary["eval_before"]["calls_per_question"],
        "calls_after": summary["eval_after"]["calls_per_question"],
        "branches": statistics.mean(r.get("arpo/branches_per_prompt", 0.0) for r in steps_rows),
        "train_calls": statistics.mean(r.get("tools/calls_per_traj", 0.0) for r in steps_rows),
        "wall_s": time.time() - t0,
        "reward_curve": [r["reward/mean"] for r in steps_rows],
    }


def gsm8k(limit: int, out: str) -> dict:
    """SmolLM2 as shipped: greedy, with the Python tool (its prompt and one worked example) and
    without tools (a prompt asking for the answer in <answer> tags)."""
    results = {}
    settings = {
        "with python": ["data.system_prompt=python", "tools.enabled=[python]"],
        "without tools": ["data.system_prompt=direct", "tools.enabled=[]"],
    }
    for name, extra in settings.items():
        eval_out = os.path.join(out, "gsm8k-" + name.replace(" ", "-"))
        run(
            [
                sys.executable,
                "-m",
                "arpo",
                "eval",
                "eval.data=gsm8k",
                f"eval.limit={limit}",
                "reward.name=task",
                "rollout.max_response_tokens=256",
                f"eval.out={eval_out}",
                *extra,
            ]
        )
        with open(os.path.join(eval_out, "results.json")) as f:
            results[name] = json.load(f)["benchmarks"]["gsm8k"]
    return results


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for method, color in (("ARPO", "tab:blue"), ("GRPO", "tab:orange")):
        mine = [r for r in runs if r["method"] == method]
        for i, r in enumerate(mine):
            a.plot(
                [0, 1],
                [r["before"], r["after"]],
                color=color,
                marker="o",
                alpha=0.7,
                label=method if i == 0 else None,
            )
            b.plot(
                range(1, len(r["reward_curve"]) + 1),
                r["reward_curve"],
                color=color,
                alpha=0.7,
                label=method if i == 0 else None,
            )
    a.set_xticks([0, 1], ["before", "after"])
    a.set_ylabel("held-out accuracy (T=1)")
    a.legend()
    b.set_xlabel("step")
    b.set_ylabel("training reward")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--gsm8k", type=int, default=50, help="GSM8K questions (0: skip)")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "study"))
    ap.add_argument(
        "--parallel", type=int, default=1, help="training runs at once (cores split between them)"
    )
    args = ap.parse_args()
    threads = max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else None
    jobs = [(m, s) for s in args.seeds for m in METHODS]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda job: train(*job, args.steps, args.out, threads), jobs))
    gsm = gsm8k(args.gsm8k, args.out) if args.gsm8k else {}

    seeds = " ".join(map(str, args.seeds))
    command = (
        f"python -m benchmarks.arpo_vs_grpo --seeds {seeds} --steps {args.steps} --gsm8k {args.gsm8k} "
        f"--parallel {args.parallel}"
    )
    lines = [
        f"Wall times per run, {args.parallel} run(s) sharing the cores. "
        f"SmolLM2-135M-Instruct, `arith` task, {args.steps} steps of 2 prompts x 8 trajectories, lr 1e-5; "
        "held-out: 64 problems x 2 samples at T=1, same seeds before and after. Mean ± sd over seeds.",
        "",
        "| method | seeds | accuracy before | accuracy after | tool calls/question after | branches/prompt "
        "| wall min |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        cells = [
            mean_sd([r[key] * scale for r in mine])
            for key, scale in (
                ("before", 1),
                ("after", 1),
                ("calls_after", 1),
                ("branches", 1),
                ("wall_s", 1 / 60),
            )
        ]
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per run: "
        + "; ".join(f"{r['method']} s{r['seed']}: {r['before']:.3f} -> {r['after']:.3f}" for r in runs),
    ]
    png = os.path.join(ROOT, "benchmarks", "arpo_vs_grpo.png")
    plot(runs, png)
    lines += ["", "![ARPO vs GRPO](arpo_vs_grpo.png)", ""]
    if gsm:
        lines += [
            f"SmolLM2-135M-Instruct as shipped on GSM8K (first {args.gsm8k} questions drawn with seed 0 from "
            "`../shared/data/arpo/eval/gsm8k`), greedy, 256 response tokens:",
            "",
            "| setting | accuracy | tool calls/question | invalid call rate | response tokens | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in gsm.items():
            lines.append(
                f"| {name} | {m['accuracy']:.3f} | {m['tool_calls_per_question']:.2f} | "
                f"{m['invalid_call_rate']:.3f} | {m['response_tokens']:.1f} | {m['wall_time_s']:.0f} |"
            )
        lines.append("")
    print(append_result("ARPO vs GRPO on the embedded default", command, "\n".join(lines), machine()))


if __name__ == "__main__":
    main()
