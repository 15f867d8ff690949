"""Reward functions written for verl and TRL, unchanged, in a real (tiny) training run, with the
run's verl-named metrics, sampled trajectories and TensorBoard events."""

import json

import pytest

from tests.test_trainer import rows, run_train

# Each function is written the way its framework calls it; the "correct answer" for these checks is
# the example's own ground truth, which the function can only see if the arguments arrive right.
FUNCTIONS = """
import re

def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    a, b = map(int, re.findall(r"\\d+", extra_info["question"]))
    return 1.0 if data_source == "arith" and ground_truth == str(a * b) else 0.0

def trl_accuracy(prompts, completions, solution, **kwargs):
    out = []
    for prompt, completion, answer in zip(prompts, completions, solution):
        a, b = map(int, re.findall(r"\\d+", prompt[-1]["content"]))
        assert completion[0]["role"] == "assistant"
        out.append(float(answer == str(a * b)))
    return out
"""


@pytest.fixture
def rewards_file(tmp_path):
    path = tmp_path / "framework_rewards.py"
    path.write_text(FUNCTIONS)
    return path


@pytest.mark.parametrize("function", ["compute_score", "trl_accuracy"])
def test_verl_and_trl_rewards_score_a_correct_answer_in_training(tmp_path, rewards_file, function):
    run_dir = tmp_path / function
    run_train(
        run_dir,
        f"reward.name={rewards_file}:{function}",
        "trainer.steps=1",
        "trainer.save_every=0",
        "trainer.loggers=[tensorboard]",
        "trainer.log_samples=3",
    )
    (step,) = [r for r in rows(run_dir) if "actor/pg_loss" in r]
    assert step["reward/mean"] == 1.0 and step["reward/error_rate"] == 0.0
    assert step["critic/score/mean"] == 1.0 and step["critic/score/min"] == 1.0
    for key in (
        "critic/advantages/mean",
        "prompt_length/mean",
        "response_length/clip_ratio",
        "num_turns/mean",
    ):
        assert key in step, key
    val = [r for r in rows(run_dir) if "val/accuracy" in r]
    assert val and all("val-core/arith/acc/mean@2" in r for r in val)
    with open(run_dir / "samples.jsonl") as f:
        samples = [json.loads(line) for line in f]
    assert len(samples) == 3 and all(s["reward"] == 1.0 and s["ground_truth"] for s in samples)
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tensorboard").iterdir())


def test_a_reward_with_no_known_signature_stops_with_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(a, b):\n    return 1.0\n")
    with pytest.raises(Exception, match="does not fit the arpo convention") as e:
        run_train(tmp_path / "run", f"reward.name={bad}:f", "trainer.steps=1")
    assert "\n" not in str(e.value)
