"""Does ARPO's premise hold on each built-in task for the embedded model? Base accuracy, tool use and
the entropy change after tool results of SmolLM2-135M-Instruct, untrained, sampled at T=1.

    python -m benchmarks.task_premise [--questions 16] [--samples 4] [--tasks arith shop ...]

Per task: `arpo eval` on its held-out split with `--samples` answers per question at temperature 1
(N = M, so no branching; dH is still measured after every tool result), then a Markdown table
appended to benchmarks/RESULTS.md: accuracy, tool calls per answer, share of answers with two or
more calls, the tool error rate, mean dH (the rollout's branching signal: entropy of the k tokens
after a result minus that of the first k tokens, over log V) and the mean entropy of the k tokens
that close a call and of the k after its result. A task whose results are already under `--out`
is not measured again (delete its folder to redo it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each built-in task with the tools and response budget it needs.
TASKS = {
    "arith": ["eval.data=arith", "tools.enabled=[python]", "rollout.max_response_tokens=96"],
    "arith 3x3": [
        "eval.data=arith",
        "data.arith_mix=[3x3]",
        "tools.enabled=[python]",
        "rollout.max_response_tokens=96",
    ],
    "shop": ["eval.data=shop", "tools.enabled=[search,python]", "rollout.max_response_tokens=256"],
    "multihop": ["eval.data=multihop", "tools.enabled=[search]", "rollout.max_response_tokens=256"],
}


def measure(task: str, questions: int, samples: int, out: str) -> dict:
    eval_out = os.path.join(out, task.replace(" ", "-"))
    args = [
        sys.executable,
        "-m",
        "arpo",
        "eval",
        *TASKS[task],
        "eval.greedy=false",
        f"eval.k={samples}",
        f"eval.limit={questions}",
        "rollout.temperature=1.0",
        f"eval.out={eval_out}",
    ]
    if not os.path.exists(os.path.join(eval_out, "results.json")):  # finished tasks are kept
        print("$", " ".join(args), flush=True)
        subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(eval_out, "results.json")) as f:
        metrics = next(iter(json.load(f)["benchmarks"].values()))
    records = [json.loads(line) for line in open(next(_records(eval_out)))]
    metrics["two_calls"] = sum(len(r["calls"]) >= 2 for r in records) / max(1, len(records))
    return metrics


def _records(eval_out: str):
    return (os.path.join(eval_out, n) for n in sorted(os.listdir(eval_out)) if n.startswith("trajectories_"))


def _cell(metrics: dict, key: str, fmt: str = "{:.3f}") -> str:
    return fmt.format(metrics[key]) if metrics.get(key) is not None else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=16, help="held-out questions per task")
    ap.add_argument("--samples", type=int, default=4, help="answers per question at T=1")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "task_premise"))
    args = ap.parse_args()
    rows = {task: measure(task, args.questions, args.samples, args.out) for task in args.tasks}
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"## ARPO's premise on the built-in tasks, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: `{platform.platform()}`, {os.cpu_count()} cores, CPU only. Command: "
        f"`python -m benchmarks.task_premise --questions {args.questions} --samples {args.samples} "
        f"--tasks {' '.join(repr(t) if ' ' in t else t for t in args.tasks)}`. SmolLM2-135M-Instruct as "
        f"shipped, {args.questions} held-out questions x {args.samples} answers at T=1, k = 20.",
        "",
        "| task | accuracy | calls/answer | answers with >= 2 calls | tool errors | mean dH "
        "| H before call | H after result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, m in rows.items():
        lines.append(
            f"| {task} | {_cell(m, 'accuracy')} | {_cell(m, 'tool_calls_per_question', '{:.2f}')} | "
            f"{_cell(m, 'two_calls', '{:.2f}')} | {_cell(m, 'invalid_call_rate', '{:.2f}')} | "
            f"{_cell(m, 'dH', '{:+.4f}')} | {_cell(m, 'entropy_before_call')} | "
            f"{_cell(m, 'entropy_after_result')} |"
        )
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.md"), "a") as f:
        f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
