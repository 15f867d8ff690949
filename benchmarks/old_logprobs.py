"""Step time of the embedded recipe (`configs/default.yaml`) with old log-probs recomputed by the
trainer (`algo.old_logprobs=recompute`) against taken from the rollout (`rollout`), in one run.

Each step is one resumed `arpo train` invocation and the setting alternates in ABBA order, so the
load of a shared machine falls on both alike; start-up and checkpoints are outside the step time.
Prints a Markdown table of the mean `timing_s/step` and `timing_s/old_logprob` of each setting.

    python -m benchmarks.old_logprobs [--steps 8] [--run-dir runs/bench-old-logprobs] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

ORDER = ("recompute", "rollout", "rollout", "recompute")
QUICK = ["data.val_size=2", "trainer.eval_samples=1", "trainer.save_every=1", "trainer.keep_last=1",
         "trainer.wandb=disabled"]  # fmt: skip


def run_steps(steps: int, run_dir: str, overrides: list[str]) -> dict[int, str]:
    """Train `steps` steps, one invocation each; the setting of every step."""
    setting = {}
    for step in range(1, steps + 1):
        source = ORDER[(step - 1) % len(ORDER)]
        cmd = [sys.executable, "-m", "arpo", "train", "configs/default.yaml", *QUICK, *overrides,
               f"trainer.steps={step}", f"algo.old_logprobs={source}", f"run_dir={run_dir}"]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        setting[step] = source
        print(f"step {step}/{steps}: {source}", flush=True)
    return setting


def table(run_dir: str, setting: dict[int, str]) -> str:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if "actor/updates" in r]
    lines = ["| old_logprobs | steps | step s (mean) | old-log-prob pass s (mean) |", "|---|---|---|---|"]
    for source in ("recompute", "rollout"):
        mine = [r for r in rows if setting.get(r["step"]) == source]
        step_s = sum(r["timing_s/step"] for r in mine) / len(mine)
        old_s = sum(r.get("timing_s/old_logprob", 0.0) for r in mine) / len(mine)
        lines.append(f"| {source} | {len(mine)} | {step_s:.1f} | {old_s:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--run-dir", default="runs/bench-old-logprobs")
    args, overrides = parser.parse_known_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    setting = run_steps(args.steps, args.run_dir, overrides)
    print(table(args.run_dir, setting))


if __name__ == "__main__":
    main()
