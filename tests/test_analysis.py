import json
import os

import pytest

from arpo.analysis import TrajectoryLog, entropy_metrics, entropy_profile, trajectory_record, window_entropies
from arpo.analysis.entropy import split_phases
from arpo.analysis.records import FILE, read_records
from arpo.analysis.report import eval_entropy, window_mean
from arpo.cli import main
from arpo.rollout.tree import Group, ToolCallRecord, Trajectory


def _record(step, entropies, mask, calls):
    return {"step": step, "entropies": entropies, "loss_mask": mask, "calls": calls}


# Response tokens 0-3 generated, 4-6 a search result, 7-9 generated, 10-11 a python result, 12 generated.
ENT = [0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 5.0]
MASK = [1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]
CALLS = [{"tool": "search", "start": 4, "end": 7}, {"tool": "python", "start": 10, "end": 12}]


def test_windows_take_generated_tokens_before_the_call_and_after_the_result():
    record = _record(1, ENT, MASK, CALLS)
    assert window_entropies(record, CALLS[0], 2) == ([0.3, 0.4], [1.0, 2.0])
    # The python call's window after its result runs past the end; the one before it is all generated.
    assert window_entropies(record, CALLS[1], 2) == ([2.0, 3.0], [5.0])
    # A window reaching back over the search result skips the result's tokens (no entropy there).
    assert window_entropies(record, CALLS[1], 5) == ([1.0, 2.0, 3.0], [5.0])


def test_profile_means_by_offset_per_tool_and_over_all_tools():
    records = [_record(1, ENT, MASK, CALLS), _record(1, [h * 3 for h in ENT], MASK, CALLS[:1])]
    prof = entropy_profile(records, lo=-2, hi=1)
    assert list(prof) == ["all", "python", "search"]
    assert prof["search"]["offsets"] == [-2, -1, 0, 1]
    assert prof["search"]["mean"] == pytest.approx([0.6, 0.8, 2.0, 4.0])  # (x + 3x) / 2
    assert prof["search"]["count"] == [2, 2, 2, 2] and prof["search"]["calls"] == 2
    # python: offsets -2, -1 are tokens 8, 9; offset 0 is token 12; offset 1 lies past the end.
    assert prof["python"]["mean"][:3] == pytest.approx([2.0, 3.0, 5.0]) and prof["python"]["count"][3] == 0
    assert prof["all"]["calls"] == 3
    assert prof["all"]["mean"][0] == pytest.approx((0.3 + 0.9 + 2.0) / 3)
    assert window_mean(prof["search"], -2, 0) == pytest.approx(0.7)


def test_first_and_last_phases_take_a_quarter_of_the_steps():
    records = [_record(s, ENT, MASK, CALLS) for s in range(1, 9)]
    phases = split_phases(records)
    assert list(phases) == ["first steps (1-2)", "last steps (7-8)"]
    assert [r["step"] for r in phases["last steps (7-8)"]] == [7, 8]
    assert list(split_phases([_record(None, ENT, MASK, CALLS)])) == ["eval"]


def _group():
    root = Trajectory(id=0, tokens=list(range(13)), loss_mask=MASK, logprobs=[0.0] * 13, entropies=ENT)
    root.tool_calls = [ToolCallRecord("search", {}, "r", start=4, end=7, dH=0.01)]
    root.tool_calls.append(ToolCallRecord("python", {}, "r", start=10, end=12))
    child = Trajectory(id=1, parent=0, fork_pos=7, tokens=list(range(9)), loss_mask=MASK[:9])
    child.logprobs, child.entropies = [0.0] * 9, [0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 4.0, 6.0]
    child.tool_calls = [ToolCallRecord("search", {}, "r", start=4, end=7)]  # inherited from the root
    return Group(group_id=3, prompt_ids=[1], trajectories=[root, child])


def test_records_keep_own_calls_and_metrics_average_every_windowed_token():
    group = _group()
    assert trajectory_record(group.trajectories[1], 3, 5)["calls"] == []  # inherited: the root's
    assert trajectory_record(group.trajectories[0], 3, 5)["calls"][0]["dH"] == 0.01
    m = entropy_metrics([group], k=2)
    assert m["arpo/entropy_before_call"] == pytest.approx((0.3 + 0.4 + 2.0 + 3.0) / 4)
    assert m["arpo/entropy_after_result"] == pytest.approx((1.0 + 2.0 + 5.0) / 3)
    assert entropy_metrics([Group(0, [1], [Trajectory(id=0)])], k=2) == {}


def test_trajectory_log_samples_per_step_and_drops_steps_redone_after_resume(tmp_path):
    log = TrajectoryLog(str(tmp_path), per_step=1, seed=0, start_step=0)
    for step in (1, 2, 3):
        log.log(step, [_group()])
    rows = read_records(str(tmp_path / FILE))
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["group"] == 3 for r in rows)
    TrajectoryLog(str(tmp_path), per_step=1, seed=0, start_step=2)
    assert [r["step"] for r in read_records(str(tmp_path / FILE))] == [1, 2]
    TrajectoryLog(str(tmp_path), per_step=1, seed=0, start_step=0)
    assert read_records(str(tmp_path / FILE)) == []


def test_cli_analyze_draws_the_picture_and_writes_its_numbers(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [_record(s, [h * s for h in ENT], MASK, CALLS) for s in (1, 2, 3, 4)]
    (run / FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["analyze", str(run), "k=2"]) == 0
    out = capsys.readouterr().out
    assert os.path.getsize(run / "entropy.png") > 0
    numbers = json.loads((run / "entropy_profile.json").read_text())
    search_first = numbers["first steps (1)"]["search"]
    assert search_first["mean"][search_first["offsets"].index(0)] == pytest.approx(1.0)
    last = numbers["last steps (4)"]["search"]
    assert last["mean"][last["offsets"].index(-1)] == pytest.approx(1.6)
    # The table's row for step 4's search calls: before (0.3, 0.4) x 4, after (1.0, 2.0) x 4.
    assert [line.split()[-4:] for line in out.splitlines() if line.startswith("last steps (4)  ")][-1] == [
        "search",
        "1",
        "1.400",
        "6.000",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze"], "usage: arpo analyze"),
        (["analyze", "x", "kk=3"], "unknown option 'kk'"),
        (["analyze", "x", "k=0"], "k must be a positive integer"),
        (["analyze", "/nonexistent"], "no trajectories.jsonl"),
    ],
)
def test_bad_analyze_input_is_a_one_line_error(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("arpo: error:") and message in err and len(err.strip().splitlines()) == 1


def test_analyze_refuses_records_without_tool_calls(tmp_path, capsys):
    (tmp_path / FILE).write_text(json.dumps(_record(1, [0.5], [1], [])) + "\n")
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no trajectory there made a tool call" in capsys.readouterr().err


def test_an_evaluation_gets_its_numbers_and_its_own_picture(tmp_path, capsys):
    group = _group()
    group.stats["dH"] = [0.01, 0.03]
    path = tmp_path / "trajectories_bench.jsonl"
    path.write_text("".join(json.dumps(trajectory_record(t, 3)) + "\n" for t in group.trajectories))
    m = eval_entropy([group], 2, str(path))
    assert m == pytest.approx({"entropy_before_call": 1.425, "entropy_after_result": 8 / 3, "dH": 0.02})
    assert os.path.getsize(tmp_path / "entropy_bench.png") > 0
    assert main(["analyze", str(path), "k=2"]) == 0
    assert list(json.loads((tmp_path / "entropy_bench_profile.json").read_text())) == ["eval"]
