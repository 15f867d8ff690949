"""Experiment trackers beside `metrics.jsonl` (which is always written): wandb (offline unless
`trainer.wandb=online`; each step's sampled trajectories as a `generations` table) and TensorBoard
(scalars, and the samples as a text table, under `<run_dir>/tensorboard`). Chosen with
`trainer.loggers=[wandb,tensorboard]`. A tracker that fails is switched off with a warning: a
dashboard never stops training."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

TRACKERS = ("wandb", "tensorboard")
SAMPLE_COLUMNS = ("group", "trajectory", "prompt", "response", "ground_truth", "reward", "advantage")


def _cell(value) -> str | float | int:
    return value if isinstance(value, (str, int, float)) else json.dumps(value)


class WandbTracker:
    def __init__(self, run_dir: str, mode: str, config: dict):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb
        self.run = wandb.init(
            project="arpo",
            dir=run_dir,
            mode=mode,
            config=config,
            name=os.path.basename(run_dir),
            reinit="finish_previous",
            # wandb's metadata records the command line (which may hold an API key) and git
            # remotes (which may hold a token); the config it gets is already redacted.
            settings=wandb.Settings(x_disable_meta=True),
        )

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step)

    def samples(self, step: int, rows: list[dict]) -> None:
        data = [[_cell(row.get(c)) for c in SAMPLE_COLUMNS] for row in rows]
        self.run.log({"generations": self.wandb.Table(columns=list(SAMPLE_COLUMNS), data=data)}, step=step)

    def close(self) -> None:
        self.run.finish()


class TensorBoardTracker:
    def __init__(self, run_dir: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def log(self, step: int, metrics: dict) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def samples(self, step: int, rows: list[dict]) -> None:
        header = "| " + " | ".join(SAMPLE_COLUMNS) + " |\n|" + "---|" * len(SAMPLE_COLUMNS)
        lines = [
            "| " + " | ".join(str(_cell(row.get(c))).replace("\n", " ") for c in SAMPLE_COLUMNS) + " |"
            for row in rows
        ]
        self.writer.add_text("generations", "\n".join([header, *lines]), step)

    def close(self) -> None:
        self.writer.close()


def start_trackers(
    names: list[str], run_dir: str, wandb_mode: str, config: dict, warn: Callable[[str], None]
):
    """The trackers `names` asks for that could start; one that cannot is reported through `warn`."""
    started = []
    for name in names:
        if name == "wandb" and wandb_mode == "disabled":
            continue
        try:
            tracker = (
                WandbTracker(run_dir, wandb_mode, config) if name == "wandb" else TensorBoardTracker(run_dir)
            )
        except Exception as e:  # an optional dashboard: say why and go on without it
            reason = str(e).splitlines()[0] if str(e) else repr(e)
            warn(f"{name} unavailable ({reason}); metrics go to metrics.jsonl")
            continue
        started.append(tracker)
    return started
