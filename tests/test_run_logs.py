"""Per-step logs cut back to a checkpoint on resume: torn tails, every log, no duplicate rows."""

import json

from arpo.trainer import run_logs


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_cuts_every_per_step_log_to_the_checkpoint_and_repairs_a_torn_tail(tmp_path):
    metrics = [{"step": 0, "val/acc": 0.1}, {"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    _write(tmp_path / "metrics.jsonl", metrics[:2])
    _write(tmp_path / "samples.jsonl", [{"step": 1, "response": "a"}])
    _write(tmp_path / "other_per_step.jsonl", [{"step": 1, "x": 1}])
    _write(tmp_path / "notes.jsonl", [{"note": "not per step"}])
    counts = run_logs.row_counts(str(tmp_path))  # a checkpoint saved after step 1
    assert counts == {"metrics.jsonl": 2, "samples.jsonl": 1, "other_per_step.jsonl": 1}
    # Step 2 and a final held-out row at step 2 were logged after it; then a kill tore a line.
    _write(tmp_path / "metrics.jsonl", [*metrics, {"step": 2, "val/acc": 0.3}], tail='{"step": 3, "lo')
    _write(tmp_path / "samples.jsonl", [{"step": 1, "response": "a"}, {"step": 2, "response": "b"}])
    _write(tmp_path / "other_per_step.jsonl", [{"step": 1, "x": 1}, {"step": 2, "x": 2}])
    run_logs.repair(str(tmp_path), 1, counts)
    assert _read(tmp_path / "metrics.jsonl") == metrics[:2]
    assert _read(tmp_path / "samples.jsonl") == [{"step": 1, "response": "a"}]
    assert _read(tmp_path / "other_per_step.jsonl") == [{"step": 1, "x": 1}]
    assert _read(tmp_path / "notes.jsonl") == [{"note": "not per step"}]


def test_without_recorded_counts_steps_decide(tmp_path):
    _write(tmp_path / "metrics.jsonl", [{"step": 0}, {"step": 1}, {"step": 2}, {"step": 2, "val/acc": 1}])
    _write(tmp_path / "samples.jsonl", [{"step": 1}, {"step": 2}], tail="\x00\x00garbage\n")
    run_logs.repair(str(tmp_path), 1, None)
    assert _read(tmp_path / "metrics.jsonl") == [{"step": 0}, {"step": 1}]
    assert _read(tmp_path / "samples.jsonl") == [{"step": 1}]
    run_logs.repair(str(tmp_path), 0, None)  # a fresh run keeps no row
    assert (tmp_path / "metrics.jsonl").read_text() == "" and (tmp_path / "samples.jsonl").read_text() == ""


def test_a_torn_first_line_of_a_fresh_log_is_dropped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "va')
    assert run_logs.row_counts(str(tmp_path)) == {"metrics.jsonl": 0}
    run_logs.repair(str(tmp_path), 0, None)
    assert (tmp_path / "metrics.jsonl").read_text() == ""
