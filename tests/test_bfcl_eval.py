"""`arpo eval eval.data=bfcl:...` end to end: the CLI's one-line errors, a tiny model through the
whole path (prompt style, single- and multi-turn), and function-calling conversations whose
calls run on BFCL's simulated APIs (a scripted engine stands in for the model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from arpo.eval.bfcl.bridge import BfclUnavailable, BfclWorker
from arpo.eval.bfcl.calls import FC
from arpo.eval.bfcl.runner import CategoryRun
from arpo.rollout.interface import TokenEvent
from tests.test_bfcl import TOOL_TEMPLATE


def arpo_eval(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "arpo", "eval", *args], capture_output=True, text=True, cwd=cwd, timeout=1800
    )


def test_unknown_category_is_a_one_line_error(tmp_path):
    out = arpo_eval("model.path=tiny-llama", "eval.data=bfcl:simple_pyton", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("arpo: error: unknown BFCL category 'simple_pyton'")
    assert len(out.stderr.strip().splitlines()) == 1


def test_sampling_is_refused(tmp_path):
    out = arpo_eval("model.path=tiny-llama", "eval.data=bfcl:irrelevance", "eval.greedy=false", cwd=tmp_path)
    assert out.returncode == 2 and "one greedy answer per entry" in out.stderr


@pytest.fixture(scope="module")
def worker():
    try:
        w = BfclWorker(timeout_s=120)
        w.request("load", 900, categories=["multi_turn_base", "simple_python"])
    except BfclUnavailable as e:
        pytest.skip(f"BFCL tests need the bfcl-eval environment: {e}")
    yield w
    w.close()


@pytest.mark.slow
def test_checkpoint_end_to_end(worker, tmp_path):
    """A saved checkpoint (a Hugging Face directory, as training writes them) through the whole
    path: its ChatML template ignores tools, so BFCL's prompt style is used and said so."""
    from arpo.models.export import export_hf
    from arpo.models.tiny import tiny_model

    checkpoint = export_hf(*tiny_model("qwen2"), str(tmp_path / "step-000001" / "hf"))
    out_dir = tmp_path / "eval"
    out = arpo_eval(
        f"model.path={checkpoint}",
        "eval.data=bfcl:simple_python,irrelevance,multi_turn_base",
        "eval.limit=2",
        "rollout.max_response_tokens=8",
        f"eval.out={out_dir}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BFCL's prompt style" in out.stdout
    assert "left out:" in out.stdout
    summary = json.loads((out_dir / "results.json").read_text())["bfcl"]
    assert summary["call_format"] == "prompt"
    assert set(summary["categories"]) == {"simple_python", "irrelevance", "multi_turn_base"}
    for name, metrics in summary["categories"].items():
        rows = [
            json.loads(line) for line in (out_dir / f"transcripts_bfcl_{name}.jsonl").read_text().splitlines()
        ]
        assert len(rows) == metrics["entries"] == 2
        assert all(row["error"] or row["valid"] for row in rows)  # every failure has its reason
        assert all(row["steps"] or row["error_type"] == "arpo:entry_failed" for row in rows)


class ScriptedEngine:
    """The engine protocol answering each prompt with the next scripted text of its entry; its
    sequences finish, so every prompt is a new one."""

    def __init__(self, tokenizer, script: dict[str, list[str]]):
        self.tokenizer, self.script, self.seqs, self.prompts = tokenizer, script, {}, []

    def add(self, prompt_ids, params):
        text = self.tokenizer.decode(prompt_ids)
        self.prompts.append(text)
        key = next(k for k in self.script if k in text)
        answer = self.script[key].pop(0)
        self.seqs[len(self.seqs)] = list(self.tokenizer(answer, add_special_tokens=False).input_ids)
        return len(self.seqs) - 1

    def status(self, seq_id):
        return ("running", None) if self.seqs[seq_id] else ("finished", "eos")

    def has_runnable(self):
        return any(self.seqs.values())

    def step(self):
        events = []
        for seq_id, tokens in self.seqs.items():
            if tokens:
                token = tokens.pop(0)
                status = "running" if tokens else "finished"
                events.append(TokenEvent(seq_id, token, 0.0, 0.0, status, None if tokens else "eos"))
        return events

    def release(self, seq_id):
        pass


def test_function_calling_conversation_runs_calls_and_follows_turns(worker):
    from arpo.models.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    entries = worker.request("load", categories=["multi_turn_base"])["entries"]["multi_turn_base"]
    entry = entries[1]  # four turns, the first asks to list the files
    first_user = entry["question"][0][0]["content"][:30]
    call = '<tool_call>\n{"name": "ls", "arguments": {"a": true}}\n</tool_call>'
    script = {first_user: [call, "Listed.", "done", "done", "done"]}
    engine = ScriptedEngine(tokenizer, script)
    run = CategoryRun(engine, tokenizer, worker, FC, max_new_tokens=64, context=10**6)
    (record,) = run.run("multi_turn_base", [entry], 1, on_done=lambda records: None)
    first = record["steps"][0]
    assert first["calls"] == ["ls(a=True)"] and "current_directory_content" in first["results"][0]
    assert "no function call" in record["steps"][1]["turn_end"]
    # The result went back to the model as a tool message, in its own template.
    assert "<|im_start|>tool\n" + first["results"][0] in engine.prompts[1]
    assert [s["turn"] for s in record["steps"]] == [0, 0, 1, 2, 3]
    # BFCL's multi-turn checker judged it: only the first turn's calls were made.
    assert not record["valid"] and record["error_type"].startswith("multi_turn:")
    assert record["calls"] == 1 and record["call_format"] == FC
    # This engine's sequences finish (nothing cached): every later answer is prefilled afresh.
    assert [s["kv_cache"] for s in record["steps"]] == ["started"] + ["restarted"] * 4


@pytest.mark.slow
def test_compare_prints_result_dirs_side_by_side(tmp_path):
    for name, acc in (("a", 0.5), ("b", 0.25)):
        os.makedirs(tmp_path / name)
        summary = {
            "categories": {"irrelevance": {"accuracy": acc, "entries": 4}},
            "overall": {"unweighted": acc, "bfcl_weighted": acc, "left_out": []},
            "call_format": "prompt",
        }
        (tmp_path / name / "results.json").write_text(json.dumps({"bfcl": summary}))
    out = arpo_eval(f"eval.compare={tmp_path / 'a'},{tmp_path / 'b'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.strip().startswith("irrelevance"))
    assert row.split()[1:] == ["50.0", "25.0"]
