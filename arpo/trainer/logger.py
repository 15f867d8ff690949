"""Metrics to `metrics.jsonl` and the chosen trackers (wandb offline unless enabled, TensorBoard;
see trackers.py), sampled trajectories to `samples.jsonl`, and a progress line with reward and time
left on the output channel (arpo.output). Only rank 0 writes."""

from __future__ import annotations

import json
import math
import os
import time

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from arpo import output
from arpo.output import console
from arpo.trainer import run_logs
from arpo.trainer.trackers import start_trackers


class MetricsLogger:
    def __init__(
        self,
        run_dir: str,
        total_steps: int,
        start_step: int,
        wandb_mode: str,
        config: dict,
        enabled: bool = True,
        loggers: tuple[str, ...] = ("wandb",),
        kept_rows: dict[str, int] | None = None,
    ):
        """`kept_rows`: the per-step logs' row counts recorded by the checkpoint resumed from."""
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.samples_path = os.path.join(run_dir, "samples.jsonl")
        self.trackers: list = []
        self.progress = None
        self.shown: dict[str, float] = {}
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        run_logs.repair(run_dir, start_step, kept_rows)
        self.trackers = start_trackers(list(loggers), run_dir, wandb_mode, config, output.warn)
        self.progress = Progress(
            TextColumn("[bold]step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")
        self.progress.start()

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._to_trackers("log", step, metrics)
        for key, label in (("reward/mean", "reward"), ("val/accuracy", "held-out acc")):
            if key in metrics:
                self.shown[label] = metrics[key]
        info = "  ".join(f"{label} {v:.3f}" for label, v in self.shown.items())
        self.progress.update(self.task, completed=step, info=info)
        if not console.is_terminal:  # logs and CI: the live bar only renders on a terminal
            console.print(f"step {step}/{self.progress.tasks[0].total}  {info}")

    def samples(self, step: int, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        with open(self.samples_path, "a") as f:
            for r in rows:
                f.write(json.dumps({"step": step, **r}, default=str) + "\n")
        self._to_trackers("samples", step, rows)

    def _to_trackers(self, method: str, step: int, payload) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(step, payload)
            except Exception as e:  # a dashboard never stops training
                output.warn(f"{type(tracker).__name__} failed, switching it off: {str(e).splitlines()[0]}")
                self.trackers.remove(tracker)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception:  # closing a dashboard at exit: nothing left to save or report
                pass


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


class Timer:
    """`with timer("rollout"): ...` accumulates seconds under `timing_s/rollout`."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                key = f"timing_s/{name}"
                timer.times[key] = timer.times.get(key, 0.0) + time.perf_counter() - self.t0

        return _Span()
