"""`arpo train`: rollout -> reward -> advantages -> update -> weights visible to the rollout engine.

One loop for every launch (a CPU laptop or `torchrun` over GPUs and nodes); see distributed.py.
`train` sets up (or resumes) a run, then loops over `train_step`, `maybe_evaluate` and `maybe_save`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict

import torch

from arpo import output
from arpo.agent.rollout import sampled
from arpo.algo.advantages import grpo_advantages
from arpo.analysis import TrajectoryLog, entropy_metrics
from arpo.config import Config, redacted, save_config
from arpo.errors import ArpoError
from arpo.eval.metrics import held_out_metrics
from arpo.outdirs import check_writable_dir
from arpo.rollout.stats import engine_metrics, rollout_stats
from arpo.rollout.tree import Group
from arpo.trainer.batches import rank_slice, step_indices
from arpo.trainer.checkpoint import TrainerState, load_checkpoint, load_newest_readable, save_checkpoint
from arpo.trainer.components import Components, build
from arpo.trainer.distributed import Dist, init_distributed, reduce_metrics, shutdown
from arpo.trainer.logger import MetricsLogger, Timer
from arpo.trainer.metrics import actor_metrics, logprob_mismatch, reward_metrics
from arpo.trainer.report import plot_metrics, write_summary
from arpo.trainer.samples import sample_rows
from arpo.trainer.update import mean_over_updates, old_logprobs, ppo_update
from arpo.trainer.verl_metrics import verl_metrics

MAX_BAD_STEPS = 3  # consecutive non-finite steps before the run stops


def train(cfg: Config) -> dict:
    check_writable_dir(cfg.run_dir, "run_dir")
    dist = init_distributed()
    output.set_enabled(dist.is_main)
    with contextlib.ExitStack() as cleanup:  # last in, first out: the engine goes before the process group
        cleanup.callback(shutdown, dist)
        started = time.time()
        torch.manual_seed(cfg.seed)
        run = build(cfg, dist)
        cleanup.callback(run.agent.executor.shutdown)  # MCP servers stop with the run, however it ends
        cleanup.callback(run.agent.engine.close)
        state, last_saved = resume(cfg, run)
        if dist.is_main:  # only once resuming has worked: a failed resume leaves the saved config as it was
            save_config(cfg, os.path.join(cfg.run_dir, "config.yaml"))
        log = MetricsLogger(
            cfg.run_dir,
            cfg.trainer.steps,
            state.step,
            cfg.trainer.wandb,
            asdict(redacted(cfg)),
            enabled=dist.is_main,
            loggers=tuple(cfg.trainer.loggers),
            kept_rows=state.log_rows,
        )
        trajectories = TrajectoryLog(
            cfg.run_dir, cfg.trainer.log_trajectories, cfg.seed, state.step, dist.is_main
        )
        _announce(cfg, run, dist, state, last_saved)
        if state.eval_before is None:
            state.eval_before = evaluate(cfg, run, dist)
            log.log(0, state.eval_before)
        bad_steps = 0
        for step in range(state.step, cfg.trainer.steps):
            metrics, groups = train_step(cfg, run, dist, step)
            bad_steps = _check_finite(metrics["actor/skipped"], bad_steps, step)
            metrics = reduce_metrics({**metrics, **maybe_evaluate(cfg, run, dist, step + 1)}, dist)
            log.log(step + 1, metrics)
            advantages = grpo_advantages(groups, cfg.algo.norm_by_std, cfg.algo.adv_eps)[0]
            rows = sample_rows(
                run.learner.tokenizer, groups, advantages, cfg.trainer.log_samples, _seed(cfg, step)
            )
            log.samples(step + 1, rows)
            trajectories.log(step + 1, groups)
            state.step = step + 1
            last_saved = maybe_save(cfg, run, state, dist) or last_saved
        return _finish(cfg, run, dist, state, log, last_saved, started)


def resume(cfg: Config, run: Components) -> tuple[TrainerState, str | None]:
    """The newest readable checkpoint's state (weights, optimizer, RNG restored), or a fresh one."""
    loaded = None
    if cfg.trainer.resume == "auto":
        loaded = load_newest_readable(cfg.run_dir, lambda path: load_checkpoint(path, run.learner))
    if loaded is None:
        return TrainerState(), None
    run.sync_rollout_weights()
    return loaded


def _announce(cfg: Config, run: Components, dist: Dist, state: TrainerState, resumed: str | None) -> None:
    if resumed:
        output.say(f"resumed from {resumed} at step {state.step}")
    n_params = sum(p.numel() for p in run.learner.model.parameters())
    output.say(
        f"{cfg.model.path}: {n_params / 1e6:.1f}M parameters on {dist.world} x {dist.device.type}; "
        f"{len(run.train_data)} train / {len(run.val_data)} held-out prompts; run dir {cfg.run_dir}"
    )


def _seed(cfg: Config, step: int) -> int:
    return cfg.seed * 1_000_003 + step


def evaluate(cfg: Config, run: Components, dist: Dist) -> dict:
    """Accuracy and tool use on this rank's share of the held-out split, averaged over ranks."""
    examples = (
        rank_slice(run.val_data, dist.rank, dist.world) if len(run.val_data) >= dist.world else run.val_data
    )
    ids = [dist.rank * len(examples) + i for i in range(len(examples))]
    trainer = cfg.trainer
    rollout = sampled(
        cfg.rollout, trainer.eval_temperature, 1 if trainer.eval_temperature == 0 else trainer.eval_samples
    )
    # The same seeds at every evaluation: before/after differences come from the weights alone.
    groups = run.agent.run(examples, rollout, _seed(cfg, -1), ids)
    return reduce_metrics(held_out_metrics(groups), dist)


def maybe_evaluate(cfg: Config, run: Components, dist: Dist, done: int) -> dict:
    """Held-out metrics every `trainer.eval_every` steps (the last step is evaluated by `_finish`)."""
    every = cfg.trainer.eval_every
    if every and done % every == 0 and done < cfg.trainer.steps:
        return evaluate(cfg, run, dist)
    return {}


def maybe_save(cfg: Config, run: Components, state: TrainerState, dist: Dist) -> str | None:
    """A checkpoint every `trainer.save_every` steps and after the last one."""
    every = cfg.trainer.save_every
    if every and (state.step % every == 0 or state.step == cfg.trainer.steps):
        return save_checkpoint(cfg, run.learner, state, dist)
    return None


def train_step(cfg: Config, run: Components, dist: Dist, step: int) -> tuple[dict, list[Group]]:
    """One step on this rank's share of the step's prompts: its metrics (not yet averaged over
    ranks) and its scored groups."""
    timer = Timer()
    started = time.perf_counter()
    prompts = cfg.data.prompts_per_step
    mine = rank_slice(
        list(enumerate(step_indices(step, prompts, len(run.train_data), cfg.data.seed))),
        dist.rank,
        dist.world,
    )
    examples = [run.train_data[i] for _, i in mine]
    engine, executor = run.agent.engine, run.agent.executor
    calls_before, engine_before = len(executor.records), dict(engine.stats)
    with timer("rollout"):
        groups = run.agent.generate(
            examples, cfg.rollout, _seed(cfg, step), [step * prompts + p for p, _ in mine]
        )
    rollout_engine = engine_metrics(engine, engine_before)
    engine.sleep()  # vLLM on GPU frees its memory for the update; update_weights wakes it
    with timer("reward"):
        run.agent.score(groups, examples)
    old, actor = _update(cfg, run, dist, groups, [p for p, _ in mine], step, timer)
    with timer("update_weights"):
        run.sync_rollout_weights()
    step_time = time.perf_counter() - started
    timer.times["timing_s/step"] = step_time
    timer.times["timing_s/tools"] = sum(r.latency_s for r in executor.records[calls_before:])
    metrics = {
        **rollout_stats(groups),
        **entropy_metrics(groups, cfg.rollout.k),
        **rollout_engine,
        **reward_metrics(groups),
        **verl_metrics(groups, grpo_advantages(groups, cfg.algo.norm_by_std, cfg.algo.adv_eps)[0]),
        **actor_metrics(actor, groups, run.learner.scheduler.get_last_lr()[0]),
        **logprob_mismatch(groups, old, cfg.algo.old_logprobs),
        "perf/tokens_per_s": sum(len(g.prompt_ids) + len(t) for g in groups for t in g.trajectories)
        / step_time,
        **timer.times,
    }
    return metrics, groups


def _update(
    cfg: Config, run: Components, dist: Dist, groups: list[Group], positions: list[int], step: int, timer
):
    """Old log-probs, then the PPO updates of the batch (arpo/trainer/update.py). Returns (old
    log-probs, the mean of the updates' metrics with `updates` and `skipped`)."""
    learner = run.learner
    temperature = cfg.rollout.temperature or 1.0  # log-probs of the sampling distribution (greedy: T=1)
    with timer("old_logprob") if cfg.algo.old_logprobs == "recompute" else contextlib.nullcontext():
        old = old_logprobs(learner.model, groups, cfg, dist, temperature)
    with timer("update"):
        updates = ppo_update(
            learner.model, groups, positions, old, cfg, learner.ref_model, learner.optimizer, dist,
            temperature, _seed(cfg, step),
        )  # fmt: skip
        actor = mean_over_updates(updates)
        if actor["skipped"] < 1.0:
            learner.scheduler.step()
    return old, actor


def _check_finite(skipped: float, bad_steps: int, step: int) -> int:
    """The count of consecutive skipped steps; stops the run after MAX_BAD_STEPS of them."""
    if not skipped:
        return 0
    bad_steps += 1
    output.warn(f"step {step + 1}: non-finite loss or gradient; update skipped on every rank")
    if bad_steps >= MAX_BAD_STEPS:
        raise ArpoError(
            f"{bad_steps} consecutive steps had non-finite loss or gradients; stopping "
            f"(lower trainer.lr, check the reward and data)"
        )
    return bad_steps


def _finish(
    cfg: Config,
    run: Components,
    dist: Dist,
    state: TrainerState,
    log: MetricsLogger,
    last_saved: str | None,
    started: float,
) -> dict:
    """The held-out numbers after training, the summary files and plot."""
    eval_after = evaluate(cfg, run, dist)
    log.log(cfg.trainer.steps, eval_after)
    log.close()
    run.agent.executor.shutdown()
    summary = {
        "model": cfg.model.path,
        "task": cfg.data.train,
        "steps": cfg.trainer.steps,
        "wall_time_s": time.time() - started,
        "eval_before": _strip(state.eval_before),
        "eval_after": _strip(eval_after),
        "checkpoint": last_saved,
    }
    if dist.is_main:
        plot_metrics(cfg.run_dir)
        path = write_summary(cfg.run_dir, summary)
        with open(path) as f:
            output.say(f.read())
    return summary


def _strip(m: dict) -> dict:
    return {k.removeprefix("val/"): v for k, v in m.items()}
