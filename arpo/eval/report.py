"""What an evaluation leaves behind: a console table, results.json and per-question transcripts."""

from __future__ import annotations

import json
import os

from rich import box
from rich.table import Table

from arpo import output
from arpo.agent.rollout import accuracy_of
from arpo.data import Example
from arpo.rollout.tree import Group


def question_text(ex: Example) -> str:
    if ex.extra.get("question"):
        return str(ex.extra["question"])
    users = [m["content"] for m in ex.prompt_messages if m.get("role") == "user"]
    return users[-1] if users else ""


def transcript_rows(groups: list[Group], examples: list[Example]) -> list[dict]:
    return [
        {
            "question": question_text(ex),
            "ground_truth": ex.ground_truth,
            "data_source": ex.data_source,
            "samples": [
                {
                    "response": t.text,
                    "score": t.reward,
                    "acc": accuracy_of(t),
                    "finish_reason": t.finish_reason,
                    "response_tokens": len(t.tokens),
                    "tool_calls": [
                        {"name": c.name, "arguments": c.arguments, "result": c.result, "error": c.error}
                        for c in t.tool_calls
                    ],
                }
                for t in g.trajectories
            ],
        }
        for g, ex in zip(groups, examples)
    ]


def append_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def write_results(out_dir: str, results: dict) -> str:
    path = os.path.join(out_dir, "results.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
    return path


def results_table(benchmarks: dict[str, dict], k: int) -> Table:
    passes = sorted({1, k})
    # Collapsed padding keeps a k>1 table inside an 80-column terminal.
    table = Table(title="arpo eval", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    table.add_column("benchmark", no_wrap=True)
    for col in ("n", "acc", *(f"pass@{j}" for j in passes), "calls/q", "invalid", "tokens", "wall s"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, m in benchmarks.items():
        table.add_row(
            name,
            str(m["questions"]),
            f"{m['accuracy']:.3f}",
            *(f"{m[f'pass@{j}']:.3f}" for j in passes),
            f"{m['tool_calls_per_question']:.2f}",
            f"{m['invalid_call_rate']:.1%}",
            f"{m['response_tokens']:.1f}",
            f"{m['wall_time_s']:.1f}",
        )
    return table


def print_table(benchmarks: dict[str, dict], k: int) -> None:
    """The table, then tool calls per question by tool (one line per benchmark that made calls)."""
    output.say(results_table(benchmarks, k))
    for name, m in benchmarks.items():
        if m["tool_calls_by_tool"]:
            tools = ", ".join(f"{tool} {v:.2f}" for tool, v in m["tool_calls_by_tool"].items())
            output.say(f"{name} calls per question by tool: {tools}")
