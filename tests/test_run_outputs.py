"""What a run writes for people to read: the training figure, the verl-named metrics and the sampled
trajectories of samples.jsonl."""

import pytest

from arpo.rollout.tree import Group, ToolCallRecord, Trajectory
from arpo.trainer.report import PANELS, training_figure
from arpo.trainer.samples import sample_rows
from arpo.trainer.verl_metrics import verl_metrics


def test_training_figure_labels_every_panel_and_draws_held_out_as_points():
    rows = [
        {"step": s, "reward/mean": 0.1 * s, "actor/pg_loss": 1.0 / s, "timing_s/step": 2.0} for s in (1, 2, 3)
    ]
    rows += [{"step": 0, "val/accuracy": 0.2}, {"step": 3, "val/accuracy": 0.5}]
    fig = training_figure(rows)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert len(by_title) == len(PANELS)
    for _, title, ylabel in PANELS:
        assert by_title[title].get_xlabel() == "step" and by_title[title].get_ylabel() == ylabel
    (held_out,) = by_title["held-out accuracy"].get_lines()
    assert held_out.get_linestyle() == "None" and list(held_out.get_ydata()) == [0.2, 0.5]
    (reward,) = by_title["training reward"].get_lines()
    assert reward.get_linestyle() == "-" and len(reward.get_ydata()) == 3
    assert not by_title["gradient norm"].get_lines()  # not logged: said in the panel, nothing drawn


def _traj(i, reward, mask, calls=0, finish="answer"):
    record = ToolCallRecord("python", {"code": "1"}, "x" * 2000)
    return Trajectory(
        id=i, tokens=[1] * len(mask), loss_mask=mask, logprobs=[0.0] * len(mask),
        entropies=[0.0] * len(mask), tool_calls=[record] * calls, finish_reason=finish, text=f"t{i}",
        reward=reward, reward_info={"score": reward, "acc": float(reward > 0)},
    )  # fmt: skip


@pytest.fixture
def step_groups():
    a = Group(
        0, [5, 6, 7], [_traj(0, 1.0, [1, 1, 0, 1], calls=1), _traj(1, 0.0, [1, 1], finish="length")], "42"
    )
    b = Group(1, [5, 6], [_traj(0, 0.5, [1]), _traj(1, 0.5, [1, 1, 1], calls=2)], "7")
    return [a, b], [[0.7, -0.7], [0.0, 0.0]]


def test_verl_metrics(step_groups):
    groups, adv = step_groups
    m = verl_metrics(groups, adv)
    assert m["critic/score/mean"] == pytest.approx(0.5) and m["critic/score/max"] == 1.0
    assert m["critic/score/min"] == 0.0
    # per loss token: 3 tokens at 0.7, 2 at -0.7, 4 at 0
    assert m["critic/advantages/mean"] == pytest.approx((3 * 0.7 - 2 * 0.7) / 9)
    assert m["critic/advantages/max"] == 0.7 and m["critic/advantages/min"] == -0.7
    assert m["prompt_length/mean"] == pytest.approx(2.5) and m["prompt_length/max"] == 3.0
    assert m["response_length/clip_ratio"] == 0.25
    assert m["num_turns/min"] == 2.0 and m["num_turns/max"] == 6.0 and m["num_turns/mean"] == 3.5


class _Tokenizer:
    def decode(self, ids):
        return " ".join(map(str, ids))


def test_samples_are_a_seeded_draw_with_failures_and_what_judging_needs(step_groups):
    groups, adv = step_groups
    rows = sample_rows(_Tokenizer(), groups, adv, n=4, seed=3)
    assert rows == sample_rows(_Tokenizer(), groups, adv, n=4, seed=3)
    assert {(r["group"], r["trajectory"]) for r in rows} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    failure = next(r for r in rows if r["reward"] == 0.0)
    assert failure["ground_truth"] == "42" and failure["advantage"] == -0.7
    assert failure["finish_reason"] == "length" and failure["prompt"] == "5 6 7"
    success = next(r for r in rows if r["group"] == 0 and r["trajectory"] == 0)
    assert success["reward_info"] == {"acc": 1.0}
    assert success["calls"][0]["name"] == "python" and len(success["calls"][0]["result"]) == 500
    draws = {
        tuple((r["group"], r["trajectory"]) for r in sample_rows(_Tokenizer(), groups, adv, 2, s))
        for s in range(20)
    }
    assert len(draws) > 3  # the draw depends on the seed


def test_tensorboard_tracker_writes_scalars_and_generations(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from arpo.trainer.trackers import start_trackers

    warnings = []
    (tracker,) = start_trackers(["wandb", "tensorboard"], str(tmp_path), "disabled", {}, warnings.append)
    tracker.log(1, {"reward/mean": 0.25, "actor/skipped": True, "note": "text"})
    tracker.log(2, {"reward/mean": 0.5})
    tracker.samples(
        2, [{"group": 0, "trajectory": 1, "response": "a\nb", "ground_truth": ["x"], "reward": 1.0}]
    )
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("reward/mean")] == [(1, 0.25), (2, 0.5)]
    assert "actor/skipped" not in events.Tags()["scalars"]
    assert "generations/text_summary" in events.Tags()["tensors"]
    assert not warnings


def test_a_tracker_that_cannot_start_is_a_warning(tmp_path, monkeypatch):
    import arpo.trainer.trackers as trackers

    def broken(run_dir):
        raise RuntimeError("no event writer\nsecond line")

    monkeypatch.setattr(trackers, "TensorBoardTracker", broken)
    warnings = []
    assert trackers.start_trackers(["tensorboard"], str(tmp_path), "offline", {}, warnings.append) == []
    assert warnings == ["tensorboard unavailable (no event writer); metrics go to metrics.jsonl"]
