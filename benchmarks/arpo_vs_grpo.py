"""ARPO versus GRPO at equal rollout budget on the built-in `shop` task, with ablations.

    python -m benchmarks.arpo_vs_grpo [--seeds 0 1 2 3 4] [--ablation-seeds 0 1 2] [--steps 8]
    python -m benchmarks.arpo_vs_grpo --report       # the table and the picture from finished runs

Every run trains SmolLM2-135M-Instruct from the same weights on the same prompts (`data.seed` is
fixed; `seed` varies the sampling), with M = 8 trajectories per prompt: ARPO starts N = 4 global
samples and fills the rest with branches forked after tool results, GRPO starts N = M = 8. The
ablations change one ARPO setting each: `rollout.rule=sample`, `rollout.beta=1.0` (under the sample
rule: with the threshold rule and alpha = tau, beta does not change any decision) and
`algo.attribution=hard`. The held-out split is evaluated before training and every `--eval-every`
steps at T=1 with the same seeds each time, giving learning curves against step and against the
cumulative tool calls executed in training rollouts.

Runs are independent and resumable: each writes `<out>/<name>/study.json` when it finishes and is
skipped when that file exists, so the command can be stopped and rerun, and `--report` rebuilds
the table (mean and a 95% t-interval over seeds) and `benchmarks/arpo_vs_grpo.png` from whatever
has finished, appending the table to benchmarks/RESULTS.md. `--jobs 2` runs two at a time, one
torch thread each (wall times are then those of a shared machine, alike for both methods).
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
TASK = [
    "data.train=shop",
    "data.val=shop",
    "tools.enabled=[search,python]",
    "rollout.max_response_tokens=256",
    "rollout.M=8",
    "algo.old_logprobs=rollout",  # as in `make train`: the sampler runs the policy's own fp32 weights
    "algo.micro_batch_tokens=2048",  # two runs at a time fit in 24 GiB (4096 took 10 GiB each)
]
METHODS = {
    "ARPO": ["rollout.N=4"],
    "GRPO": ["rollout.N=8"],
    "ARPO rule=sample": ["rollout.N=4", "rollout.rule=sample"],
    "ARPO rule=sample beta=1.0": ["rollout.N=4", "rollout.rule=sample", "rollout.beta=1.0"],
    "ARPO attribution=hard": ["rollout.N=4", "algo.attribution=hard"],
}
MAIN = ("ARPO", "GRPO")
# Two-sided 95% Student t quantiles by degrees of freedom (an interval over a handful of seeds).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def run_name(method: str, seed: int) -> str:
    return method.lower().replace(" ", "-").replace("=", "") + f"-seed{seed}"


def train(method: str, seed: int, args) -> dict | None:
    """One training run; its result (also saved as study.json), or None if it was already done."""
    run_dir = os.path.join(args.out, run_name(method, seed))
    done = os.path.join(run_dir, "study.json")
    if os.path.exists(done):
        return None
    cmd = [
        sys.executable,
        "-m",
        "arpo",
        "train",
        *TASK,
        *METHODS[method],
        f"seed={seed}",
        f"trainer.steps={args.steps}",
        f"data.prompts_per_step={args.prompts}",
        f"data.val_size={args.val}",
        f"trainer.eval_every={args.eval_every}",
        "trainer.save_every=0",
        "trainer.wandb=disabled",
        "trainer.resume=never",
        f"run_dir={run_dir}",
    ]
    print("$", " ".join(cmd), flush=True)
    # Concurrent runs get one thread each, so that they do not fight over the cores.
    env = dict(os.environ, OMP_NUM_THREADS="1") if args.jobs > 1 else None
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    result = {"method": method, "seed": seed, "wall_s": time.time() - t0, **curves(run_dir)}
    with open(done, "w") as f:
        json.dump(result, f)
    return result


def curves(run_dir: str) -> dict:
    """Held-out accuracy and calls per question at each evaluation, with the step and the training
    rollouts' cumulative executed tool calls and sampled tokens at that point."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    calls = tokens = 0.0
    out = {"step": [], "accuracy": [], "val_calls": [], "train_calls": [], "train_tokens": []}
    for r in rows:
        calls += r.get("tools/calls_executed", 0.0)
        tokens += r.get("rollout/sampled_tokens", 0.0)
        if "val/accuracy" in r:
            for key, value in (
                ("step", r["step"]),
                ("accuracy", r["val/accuracy"]),
                ("val_calls", r["val/calls_per_question"]),
                ("train_calls", calls),
                ("train_tokens", tokens),
            ):
                out[key].append(value)
    steps = [r for r in rows if "actor/pg_loss" in r]
    out["branches"] = statistics.mean(r.get("arpo/branches_per_prompt", 0.0) for r in steps)
    out["dH"] = [r.get("arpo/dH/mean") for r in steps]
    return out


def interval(values: list[float]) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.3f} (1 seed)"
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.3f} ± {half:.3f}"


def load_results(out: str) -> list[dict]:
    results = []
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        path = os.path.join(out, name, "study.json")
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
    return results


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, color in zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        for i, r in enumerate(x for x in results if x["method"] == method):
            style = {"color": color, "alpha": 0.6, "marker": "o", "ms": 3}
            label = method if i == 0 else None
            axes[0].plot(r["step"], r["accuracy"], label=label, **style)
            axes[1].plot(r["train_calls"], r["accuracy"], label=label, **style)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("cumulative tool calls in training rollouts")
    axes[0].set_ylabel("held-out accuracy (T=1)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(args) -> str:
    results = load_results(args.out)
    if not results:
        raise SystemExit(f"no finished runs under {args.out}")
    lines = [
        "SmolLM2-135M-Instruct, M = 8, lr 1e-5; "
        f"held-out: {args.val} questions x 2 answers at T=1. Mean ± 95% t-interval over seeds; "
        "tool calls and sampled tokens are totals of the training rollouts.",
        "",
        "| method | seeds | accuracy before | accuracy after | held-out calls/question after "
        "| training tool calls | sampled tokens | branches/prompt | wall min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        mine = [r for r in results if r["method"] == method]
        if not mine:
            continue
        cells = [
            interval([r["accuracy"][0] for r in mine]),
            interval([r["accuracy"][-1] for r in mine]),
            interval([r["val_calls"][-1] for r in mine]),
            interval([r["train_calls"][-1] for r in mine]),
            interval([r["train_tokens"][-1] for r in mine]),
            interval([r["branches"] for r in mine]),
            interval([r["wall_s"] / 60 for r in mine]),
        ]
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per run (accuracy at each evaluation): "
        + "; ".join(
            f"{r['method']} s{r['seed']}: {' -> '.join(f'{a:.3f}' for a in r['accuracy'])}" for r in results
        ),
        "",
        "![ARPO vs GRPO learning curves](arpo_vs_grpo.png)",
        "",
    ]
    plot(results, os.path.join(ROOT, "benchmarks", "arpo_vs_grpo.png"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--ablation-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step")
    ap.add_argument("--val", type=int, default=16, help="held-out questions")
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "study"))
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (each with one torch thread)")
    ap.add_argument("--report", action="store_true", help="only rebuild the table and picture")
    args = ap.parse_args()
    if not args.report:
        # ARPO and GRPO alternate seed by seed, so an interrupted study still compares like with like.
        jobs = [(m, s) for s in args.seeds for m in MAIN]
        jobs += [(m, s) for s in args.ablation_seeds for m in METHODS if m not in MAIN]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: train(*job, args), jobs))
    command = (
        f"python -m benchmarks.arpo_vs_grpo --steps {args.steps} --prompts {args.prompts} "
        f"--val {args.val} --eval-every {args.eval_every}"
    )
    print(append_result("ARPO vs GRPO on `shop` at equal budget", command, report(args), machine()))


if __name__ == "__main__":
    main()
