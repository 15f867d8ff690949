"""`arpo eval` on a checkpoint of this project asks and scores the way the run trained."""

import os

import pytest

from arpo.config import load_config, save_config
from arpo.eval.follow import checkpoint_dir, load_eval_config


@pytest.fixture
def checkpoint(tmp_path):
    trained = load_config(None, ["data.train=arith", "tools.enabled=[python]", "reward.name=arith"])
    step = tmp_path / "run" / "checkpoints" / "step-000004"
    os.makedirs(step / "hf")
    save_config(trained, str(step / "config.yaml"))
    return step


def test_the_saved_config_records_the_prompt_the_task_used():
    assert load_config(None, ["data.train=arith"]).data.system_prompt == "python"
    assert load_config(None, ["data.train=multihop"]).data.system_prompt == "search"
    assert load_config(None, ["data.train=some.parquet"]).data.system_prompt == "arpo"
    assert load_config(None, ["data.train=arith", "data.system_prompt=none"]).data.system_prompt == "none"


def test_eval_follows_the_checkpoint_unless_overridden(checkpoint, capsys):
    cfg = load_eval_config(None, [f"model.path={checkpoint}/hf", "eval.data=gsm8k"])
    assert cfg.data.system_prompt == "python" and cfg.reward.name == "arith"
    assert cfg.tools.enabled == ["python"] and cfg.model.path == f"{checkpoint}/hf"
    said = capsys.readouterr().err
    assert "evaluating as trained" in said and "data.system_prompt=python" in said
    # the checkpoint directory itself works too, and a command-line value wins
    cfg = load_eval_config(None, [f"model.path={checkpoint}", "reward.name=f1"])
    assert cfg.model.path == f"{checkpoint}/hf" and cfg.reward.name == "f1"
    assert cfg.data.system_prompt == "python"
    assert "reward.name" not in capsys.readouterr().err


def test_a_plain_model_is_evaluated_with_the_given_config(tmp_path):
    assert checkpoint_dir("tiny-llama") is None and checkpoint_dir(str(tmp_path)) is None
    cfg = load_eval_config(None, ["model.path=tiny-llama", "data.system_prompt=direct"])
    assert cfg.data.system_prompt == "direct" and cfg.model.path == "tiny-llama"
