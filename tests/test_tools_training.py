"""Tool plug-ins through whole tiny-model runs: an MCP server's tool in `arpo train` and
`arpo eval`, and a user's calculator function under both tool formats. A scripted engine writes
the model's turns (a random tiny model never calls a tool); everything else is the real path:
config, prompts, tool start-up, executor, token budgets, training steps, logs."""

import json
import os
import sys

import pytest

from arpo.config import load_config
from tests.conftest import ROOT
from tests.scripted_policy import ScriptedPolicyEngine
from tests.test_tools_mcp import SERVER, assert_all_stopped
from tests.test_trainer import BASE, rows

CALC = os.path.join(ROOT, "tests", "assets", "calculator.py") + ":calculate"
TAG_TURNS = ["<calculate>6 * 7</calculate>", "<answer>42</answer>"]
HERMES_TURNS = [
    '<tool_call>\n{"name": "calculate", "arguments": {"expression": "6 * 7"}}\n</tool_call>',
    "<answer>42</answer>",
]
SMALL = [
    "rollout.M=2",
    "rollout.N=2",
    "rollout.max_response_tokens=120",
    "trainer.steps=2",
    "tools.enabled=[]",
]


def mcp_server(pid_file: str) -> str:
    return (
        f"tools.mcp.servers=[{{name: calc, command: {sys.executable}, args: [{SERVER}, working], "
        f"tools: [calculate], timeout_s: 30, env: {{ARPO_TEST_PID_FILE: {pid_file}}}}}]"
    )


def scripted(monkeypatch, module: str, turns: list[str]) -> None:
    def build_engine(*args, **kwargs):
        tokenizer = next(a for a in args if hasattr(a, "apply_chat_template"))
        return ScriptedPolicyEngine(tokenizer, turns)

    monkeypatch.setattr(f"{module}.build_engine", build_engine)


def train(run_dir, *overrides):
    from arpo.trainer.run import train

    return train(load_config(None, [*BASE, *SMALL, f"run_dir={run_dir}", *overrides]))


def samples(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "samples.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_training_with_an_mcp_tool_logs_calls_results_and_context_metrics(tmp_path, monkeypatch):
    scripted(monkeypatch, "arpo.trainer.components", TAG_TURNS)
    pid_file = str(tmp_path / "pids")
    train(tmp_path / "run", mcp_server(pid_file), "tools.result_max_tokens=64")
    train_rows = [r for r in rows(tmp_path / "run") if "actor/pg_loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for r in train_rows:
        assert r["tools/calls_per_traj"] == 1.0 and r["tools/error_rate"] == 0.0
        assert r["tools/result_tokens/mean"] == r["tools/result_tokens/max"] > 0
        assert r["tools/truncated_rate"] == 0.0 and 0 < r["context/tool_token_share"] < 1
    evals = [r for r in rows(tmp_path / "run") if "val/accuracy" in r]
    assert evals and all("val/context/tool_token_share" in r for r in evals)
    logged = samples(tmp_path / "run")
    assert logged and all(s["calls"][0]["name"] == "calculate" for s in logged)
    assert all(s["calls"][0]["result"] == "42" and s["calls"][0]["error"] is None for s in logged)
    assert "<calculate>expression</calculate>" in logged[0]["prompt"]  # documented from its schema
    assert "<calculate>6 * 7</calculate>" in logged[0]["response"] and "42" in logged[0]["response"]
    assert_all_stopped(pid_file, 1)  # one server for the whole run, stopped with it


@pytest.mark.slow
@pytest.mark.parametrize("fmt, turns", [("tags", TAG_TURNS), ("hermes", HERMES_TURNS)])
def test_user_calculator_trains_under_both_formats(tmp_path, monkeypatch, fmt, turns):
    scripted(monkeypatch, "arpo.trainer.components", turns)
    train(
        tmp_path, f"tools.custom=[{{target: '{CALC}'}}]", f"tools.format={fmt}", "data.max_prompt_tokens=2048"
    )
    train_rows = [r for r in rows(tmp_path) if "actor/pg_loss" in r]
    assert len(train_rows) == 2 and all(r["tools/error_rate"] == 0.0 for r in train_rows)
    logged = samples(tmp_path)
    assert all(s["calls"][0]["result"] == "42" for s in logged)
    if fmt == "hermes":  # the tiny template ignores tools=: the schema is in the system prompt
        assert "<tools>" in logged[0]["prompt"] and '"name": "calculate"' in logged[0]["prompt"]
        assert "<tool_response>\n42\n</tool_response>" in logged[0]["response"]


@pytest.mark.slow
def test_eval_uses_the_same_mcp_servers(tmp_path, monkeypatch):
    from arpo.eval.harness import evaluate

    scripted(monkeypatch, "arpo.eval.harness", TAG_TURNS)
    pid_file = str(tmp_path / "pids")
    cfg = load_config(
        None,
        ["model.path=tiny-llama", "tools.enabled=[]", mcp_server(pid_file), "eval.limit=3",
         "rollout.max_response_tokens=120", f"run_dir={tmp_path}", "eval.data=arith"],
    )  # fmt: skip
    summary = evaluate(cfg)
    metrics = summary["benchmarks"]["arith"]
    assert metrics["tool_calls_per_question"] == 1.0 and metrics["accuracy"] == 0.0
    assert metrics["tools/result_tokens/mean"] > 0 and "context/tool_token_share" in metrics
    with open(tmp_path / "eval" / "transcripts_arith.jsonl") as f:
        transcript = json.loads(f.readline())
    assert "42" in json.dumps(transcript)
    assert_all_stopped(pid_file, 1)
