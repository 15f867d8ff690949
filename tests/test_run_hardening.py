"""A run directory under stress: secrets never written, unwritable outputs refused before any heavy
work, and resume that repairs torn logs, never duplicates rows and skips an unreadable checkpoint."""

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

from arpo.config import load_config
from arpo.errors import ArpoError
from tests.conftest import ROOT
from tests.test_trainer import BASE, VOLATILE, rows

SECRET_KEY, SECRET_HEADER = "sk-never-written-4f1c", "hdr-never-written-9b2e"


def _train(run_dir, *extra):
    from arpo.trainer.run import train

    return train(
        load_config(None, [*BASE, f"run_dir={run_dir}", "trainer.steps=2", "trainer.save_every=1", *extra])
    )


def _stable(metrics):
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in metrics]


def _samples(run_dir):
    with open(os.path.join(run_dir, "samples.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-step run with a checkpoint after each step."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    _train(run_dir)
    return run_dir


@pytest.fixture
def copy(finished, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def test_rerunning_a_finished_run_appends_no_row(finished, copy):
    _train(copy)
    assert _stable(rows(copy)) == _stable(rows(finished))
    assert [r["step"] for r in rows(copy)] == [0, 1, 2, 2]  # before, two steps, the final held-out row
    assert _samples(copy) == _samples(finished)


def test_resume_repairs_torn_logs_and_redoes_the_lost_step_once(finished, copy):
    shutil.rmtree(copy / "checkpoints" / "step-000002")  # killed before step 2 was saved...
    for name in ("metrics.jsonl", "samples.jsonl"):
        with open(copy / name, "a") as f:
            f.write('{"step": 2, "torn')  # ...and in the middle of a line
    _train(copy)
    assert _stable(rows(copy)) == _stable(rows(finished))
    assert [r["step"] for r in _samples(copy)] == [r["step"] for r in _samples(finished)]


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(finished, copy, caplog):
    (copy / "checkpoints" / "step-000002" / "optimizer.pt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        summary = _train(copy)
    assert any("step-000002 is unreadable" in r.getMessage() for r in caplog.records)
    assert _stable(rows(copy)) == _stable(rows(finished))
    assert summary["eval_after"] == json.loads((finished / "summary.json").read_text())["eval_after"]


def test_no_readable_checkpoint_stops_before_touching_the_run(finished, copy):
    for step in ("step-000001", "step-000002"):
        (copy / "checkpoints" / step / "trainer_state.pt").write_bytes(b"garbage")
    before = {p: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    with pytest.raises(ArpoError, match="no readable checkpoint in .*step-000002 is unreadable"):
        _train(copy, "trainer.lr=5e-3")
    assert {p: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before  # config.yaml too


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "arpo", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )


def test_secrets_are_in_no_file_of_the_run(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "ARPO_TEST_HEADER": SECRET_HEADER}
    out = _cli(
        "train", *BASE, f"run_dir={run_dir}", "trainer.steps=1", "trainer.save_every=1",
        "trainer.wandb=offline", f"tools.search.api_key={SECRET_KEY}",
        "tools.search.headers.X-Token=${oc.env:ARPO_TEST_HEADER}",
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    files = [os.path.join(d, f) for d, _, names in os.walk(run_dir) for f in names]
    assert any("wandb" in f for f in files) and any("checkpoints" in f for f in files)
    for path in files:
        data = open(path, "rb").read()
        assert SECRET_KEY.encode() not in data and SECRET_HEADER.encode() not in data, path
    saved = load_config(str(run_dir / "config.yaml"))  # read back: the secrets are unset, not "REDACTED"
    assert saved.tools.search.api_key == "" and saved.tools.search.headers == {}
    text = (run_dir / "config.yaml").read_text()
    assert "api_key: REDACTED" in text and "X-Token: REDACTED" in text


@pytest.mark.parametrize("command, key", [("train", "run_dir"), ("eval", "eval.out")])
def test_an_unwritable_output_dir_is_one_line_before_any_loading(tmp_path, command, key):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for target in (blocker, blocker / "below"):
        out = _cli(command, "model.path=/no/such/model", f"{key}={target}")
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0].startswith(f"arpo: error: {key}='{target}' is not a writable directory (")
