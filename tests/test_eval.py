"""`arpo eval`: the pass@k estimator, per-benchmark metrics, the CLI end to end on a tiny model, and
evaluation inside training."""

import itertools
import json
import random
from math import comb

import pytest

from arpo.cli import main
from arpo.config import load_config
from arpo.eval import benchmarks
from arpo.eval.harness import evaluate
from arpo.eval.metrics import benchmark_metrics
from arpo.eval.passk import pass_at_k
from arpo.rollout.tree import Group, ToolCallRecord, Trajectory
from tests.test_trainer import BASE as TRAIN_BASE
from tests.test_trainer import REWARD

TINY = ["model.path=tiny-llama", "rollout.max_response_tokens=12", "data.system_prompt=none"]
QA = [
    {"question": "What is 2+3?", "answer": "5"},
    {"question": "What is 7*6?", "answer": "42"},
    {"question": "Capital of France?", "answer": ["Paris", "paris"]},
]


# ---- pass@k --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (5, 2, 1, 0.4),
        (10, 3, 5, 1 - comb(7, 5) / comb(10, 5)),
        (10, 0, 5, 0.0),
        (5, 3, 3, 1.0),  # n - c < k: every draw of 3 holds a correct sample
        (4, 4, 1, 1.0),
        (1, 0, 1, 0.0),
    ],
)
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_enumerating_every_draw():
    rng = random.Random(0)
    for _ in range(30):
        n = rng.randint(1, 9)
        c, k = rng.randint(0, n), rng.randint(1, n)
        draws = list(itertools.combinations([i < c for i in range(n)], k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(map(any, draws)) / len(draws), abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ---- metrics -------------------------------------------------------------------------------------


def _traj(acc, n_tokens, calls=()):
    records = [ToolCallRecord(name, {}, "out", error) for name, error in calls]
    return Trajectory(0, tokens=[1] * n_tokens, tool_calls=records, reward=acc, reward_info={"acc": acc})


def test_benchmark_metrics_on_hand_made_groups():
    groups = [
        Group(0, [1], [_traj(1.0, 10, [("python", None)]), _traj(0.0, 20), _traj(0.0, 30)]),
        Group(1, [1], [_traj(0.5, 6, [("search", "bad args"), ("python", None)]), _traj(0.0, 4)] + [
            _traj(0.0, 2, [("python", "timeout")])
        ]),
    ]  # fmt: skip
    m = benchmark_metrics(groups, k=2, wall_time_s=1.5)
    assert m["questions"] == 2 and m["samples_per_question"] == 3
    assert m["accuracy"] == pytest.approx(1.5 / 6)
    # Question 0: 1 of 3 solved; question 1: none (F1 0.5 is partial credit, not a solve).
    assert m["pass@1"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["pass@2"] == pytest.approx((1 - comb(2, 2) / comb(3, 2)) / 2)
    assert m["tool_calls_per_question"] == pytest.approx(4 / 6)
    assert m["tool_calls_by_tool"] == pytest.approx({"python": 3 / 6, "search": 1 / 6})
    assert m["invalid_call_rate"] == pytest.approx(2 / 4)
    assert m["response_tokens"] == pytest.approx(72 / 6)
    assert m["wall_time_s"] == 1.5


def test_benchmark_metrics_without_tool_calls_has_zero_invalid_rate():
    m = benchmark_metrics([Group(0, [1], [_traj(1.0, 3)])], k=1, wall_time_s=0.0)
    assert m["invalid_call_rate"] == 0.0 and m["tool_calls_by_tool"] == {}
    assert m["pass@1"] == m["accuracy"] == 1.0


def test_console_table_shows_pass_at_k_and_calls_by_tool(capsys):
    from arpo.eval.report import print_table

    groups = [Group(0, [1], [_traj(1.0, 3, [("python", None)]), _traj(0.0, 5, [("search", "bad")])])]
    print_table({"bench": benchmark_metrics(groups, k=2, wall_time_s=2.0)}, 2)
    text = capsys.readouterr().err
    assert "pass@1" in text and "pass@2" in text and "50.0%" in text  # invalid-call rate
    assert "bench calls per question by tool: python 0.50, search 0.50" in text


# ---- end to end ----------------------------------------------------------------------------------


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_cli_eval_greedy_writes_results_and_transcripts(tmp_path, capsys):
    data = _jsonl(tmp_path / "mini.jsonl", QA)
    out = tmp_path / "out"
    rc = main(
        ["eval", *TINY, f"eval.data={data},arith", "data.val_size=2", f"eval.out={out}", "eval.batch_size=2"]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["greedy"] is True and results["temperature"] == 0.0
    assert list(results["benchmarks"]) == ["mini", "arith"]
    mini = results["benchmarks"]["mini"]
    for key in ("accuracy", "pass@1", "tool_calls_per_question", "tool_calls_by_tool", "invalid_call_rate",
                "response_tokens", "wall_time_s"):  # fmt: skip
        assert key in mini, key
    assert mini["questions"] == 3 and results["benchmarks"]["arith"]["questions"] == 2
    rows = _read_jsonl(out / "transcripts_mini.jsonl")
    assert [r["question"] for r in rows] == [q["question"] for q in QA]
    assert rows[2]["ground_truth"] == ["Paris", "paris"]
    assert all(len(r["samples"]) == 1 and len(r["samples"][0]["response"]) > 0 for r in rows)
    assert mini["response_tokens"] == pytest.approx(sum(r["samples"][0]["response_tokens"] for r in rows) / 3)
    assert len(_read_jsonl(out / "transcripts_arith.jsonl")) == 2
    assert "mini" in capsys.readouterr().err  # the console table


def test_sampled_eval_reports_pass_at_k_consistent_with_transcripts_and_batching(tmp_path):
    k = 3
    common = [
        *TINY,
        "eval.data=arith",
        "eval.limit=4",
        "eval.greedy=false",
        f"eval.k={k}",
        f"reward.name={REWARD}",
    ]
    runs = {}
    for batch in (1, 4):
        out = tmp_path / f"b{batch}"
        runs[batch] = evaluate(load_config(None, [*common, f"eval.batch_size={batch}", f"eval.out={out}"]))
        runs[batch]["rows"] = _read_jsonl(out / "transcripts_arith.jsonl")
    m, rows = runs[1]["benchmarks"]["arith"], runs[1]["rows"]
    assert m["samples_per_question"] == k and all(len(r["samples"]) == k for r in rows)
    accs = [[s["acc"] for s in r["samples"]] for r in rows]
    assert m["accuracy"] == pytest.approx(sum(map(sum, accs)) / (4 * k))
    assert m[f"pass@{k}"] == pytest.approx(sum(pass_at_k(k, sum(a == 1.0 for a in r), k) for r in accs) / 4)
    # Samples are seeded per question, not per batch: batching changes nothing.
    strip = [[{key: s[key] for key in ("response", "acc")} for s in r["samples"]] for r in rows]
    assert strip == [
        [{key: s[key] for key in ("response", "acc")} for s in r["samples"]] for r in runs[4]["rows"]
    ]
    # The tiny model's samples differ, so this checks real sampling, not one answer repeated.
    assert any(len({s["response"] for s in r["samples"]}) > 1 for r in rows)
    # Every sample's per-token entropies, in transcript order, for the entropy picture.
    records = _read_jsonl(tmp_path / "b1" / "trajectories_arith.jsonl")
    lengths = [s["response_tokens"] for r in rows for s in r["samples"]]
    assert [len(r["entropies"]) for r in records] == lengths
    assert all(r["step"] is None and all(h >= 0 for h in r["entropies"]) for r in records)


@pytest.mark.parametrize(
    "args,message",
    [
        (["eval.data=no/such/file.jsonl"], "eval.data item 'no/such/file.jsonl'"),
        (["eval.data=arith", "eval.k=4"], "eval.greedy=true"),
        (["eval.data=arith", "eval.batch_size=0"], "eval.batch_size"),
    ],
)
def test_bad_eval_input_is_a_one_line_error(tmp_path, capsys, args, message):
    assert main(["eval", *TINY, f"eval.out={tmp_path}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arpo: error:") and message in err and "\n" not in err


def test_vllm_engine_without_vllm_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a)
    )
    for command in ("eval", "train"):
        assert (
            main([command, *TINY, f"eval.out={tmp_path}", f"run_dir={tmp_path}", "rollout.engine=vllm"]) == 2
        )
        err = capsys.readouterr().err.strip()
        assert err.startswith("arpo: error: rollout.engine=vllm needs vLLM") and "\n" not in err


def test_named_benchmark_missing_from_shared_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchmarks, "SHARED_EVAL", str(tmp_path / "eval"))
    assert main(["eval", *TINY, "eval.data=gsm8k"]) == 2
    err = capsys.readouterr().err.strip()
    assert "gsm8k" in err and str(tmp_path / "eval" / "gsm8k") in err and "\n" not in err


def test_named_benchmark_resolves_to_the_shared_eval_folder(tmp_path, monkeypatch):
    (tmp_path / "eval" / "hotpotqa").mkdir(parents=True)
    monkeypatch.setattr(benchmarks, "SHARED_EVAL", str(tmp_path / "eval"))
    assert benchmarks.benchmarks("hotpotqa, arith,arith") == [
        ("hotpotqa", str(tmp_path / "eval" / "hotpotqa")),
        ("arith", "arith"),
        ("arith-2", "arith"),
    ]


# ---- inside training -----------------------------------------------------------------------------


def test_training_with_eval_every_logs_val_metrics(tmp_path):
    from arpo.trainer.run import train

    run_dir = tmp_path / "run"
    train(load_config(None, [*TRAIN_BASE, f"run_dir={run_dir}", "trainer.steps=2", "trainer.eval_every=1",
                             "trainer.save_every=0"]))  # fmt: skip
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    val = [r for r in rows if "val/accuracy" in r]
    # Before training, after step 1 (eval_every) and at the end.
    assert [r["step"] for r in val] == [0, 1, 2]
    assert all(0.0 <= r["val/accuracy"] <= 1.0 and "val/calls_per_question" in r for r in val)
