"""`arpo train`: rollout -> reward -> advantages -> update -> weights visible to the rollout engine.

One loop for every launch (a CPU laptop or `torchrun` over GPUs and nodes); see distributed.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict

import torch

from arpo.algo.policy import compute_logprobs, count_micro_batches, policy_loss_backward
from arpo.analysis import TrajectoryLog, entropy_metrics
from arpo.config import Config, save_config, to_yaml
from arpo.errors import ArpoError
from arpo.rollout.stats import engine_metrics, rollout_stats
from arpo.trainer import checkpoint as ckpt
from arpo.trainer.batches import rank_slice, step_indices
from arpo.trainer.components import build
from arpo.trainer.distributed import Dist, all_reduce, init_distributed, reduce_metrics, shutdown
from arpo.trainer.generate import eval_metrics, eval_rollout, generate, score
from arpo.trainer.logger import MetricsLogger, Timer
from arpo.trainer.optim import build_optimizer
from arpo.trainer.report import plot_metrics, write_summary

MAX_BAD_STEPS = 3  # consecutive non-finite steps before the run stops


def train(cfg: Config) -> dict:
    d = init_distributed()
    with contextlib.ExitStack() as cleanup:  # last in, first out: the engine goes before the process group
        cleanup.callback(shutdown, d)
        return _train(cfg, d, cleanup)


def _seed(cfg: Config, step: int) -> int:
    return cfg.seed * 1_000_003 + step


def evaluate(c, engine, cfg: Config, d: Dist, step: int) -> dict:
    """Accuracy and tool use on this rank's share of the held-out split, averaged over ranks."""
    examples = rank_slice(c.val_data, d.rank, d.world) if len(c.val_data) >= d.world else c.val_data
    ids = [d.rank * len(examples) + i for i in range(len(examples))]
    t = cfg.trainer
    rollout = eval_rollout(cfg.rollout, t.eval_temperature, 1 if t.eval_temperature == 0 else t.eval_samples)
    # The same seeds at every evaluation: before/after differences come from the weights alone.
    groups = generate(c, engine, examples, rollout, _seed(cfg, -1), ids)
    score(c, groups, examples)
    return reduce_metrics(eval_metrics(groups), d)


def _train(cfg: Config, d: Dist, cleanup: contextlib.ExitStack) -> dict:
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    c = build(cfg, d)
    cleanup.callback(c.engine.close)
    model, tok = c.model, c.tokenizer
    optimizer, scheduler = build_optimizer(
        model, cfg.trainer.lr, cfg.trainer.weight_decay, cfg.trainer.warmup_steps, cfg.trainer.steps
    )
    engine = c.engine
    if d.is_main:
        save_config(cfg, os.path.join(cfg.run_dir, "config.yaml"))

    state = {"eval_before": None}
    start = 0
    found = ckpt.list_checkpoints(cfg.run_dir) if cfg.trainer.resume == "auto" else []
    if found:
        state = ckpt.load_checkpoint(found[-1][1], model, optimizer, scheduler)
        start = state["step"]
        c.sync_rollout_weights()
    log = MetricsLogger(
        cfg.run_dir, cfg.trainer.steps, start, cfg.trainer.wandb, asdict(cfg), enabled=d.is_main
    )
    traj_log = TrajectoryLog(cfg.run_dir, cfg.trainer.log_trajectories, cfg.seed, start, d.is_main)
    if found:
        log.print(f"resumed from {found[-1][1]} at step {start}")
    n_params = sum(p.numel() for p in model.parameters())
    log.print(
        f"{cfg.model.path}: {n_params / 1e6:.1f}M parameters on {d.world} x {d.device.type}; "
        f"{len(c.train_data)} train / {len(c.val_data)} held-out prompts; run dir {cfg.run_dir}"
    )

    if state.get("eval_before") is None:
        state["eval_before"] = evaluate(c, engine, cfg, d, 0)
        log.log(0, state["eval_before"])

    P = cfg.data.prompts_per_step
    temperature = cfg.rollout.temperature or 1.0  # log-probs of the sampling distribution (greedy: T=1)
    bad_steps = 0
    last_saved = found[-1][1] if found else None
    for step in range(start, cfg.trainer.steps):
        timer = Timer()
        t0 = time.perf_counter()
        mine = rank_slice(
            list(enumerate(step_indices(step, P, len(c.train_data), cfg.data.seed))), d.rank, d.world
        )
        examples = [c.train_data[i] for _, i in mine]
        calls_before = len(c.executor.records)
        engine_before = dict(engine.stats)
        with timer("rollout"):
            groups = generate(
                c, engine, examples, cfg.rollout, _seed(cfg, step), [step * P + p for p, _ in mine]
            )
        rollout_engine = engine_metrics(engine, engine_before)
        engine.sleep()  # vLLM on GPU frees its memory for the update; update_weights wakes it
        with timer("reward"):
            score(c, groups, examples)

        # Every rank makes as many passes as the busiest one: each FSDP2 pass is a collective.
        passes = 0
        if d.enabled:
            local_passes = float(count_micro_batches(groups, cfg.algo.micro_batch_tokens))
            passes = int(all_reduce([local_passes], d, "max")[0])
        with timer("old_logprob"):
            old = compute_logprobs(model, groups, cfg.algo.micro_batch_tokens, temperature, passes)
        local = sum(sum(t.loss_mask) for g in groups for t in g.trajectories)
        loss_tokens = all_reduce([float(local)], d)[0]
        with timer("update"):
            skipped = 0.0
            for _ in range(cfg.trainer.ppo_epochs):
                # `scale` turns this rank's token-mean into its share of the global token mean; FSDP2
                # averages gradients over ranks, which `* world` undoes.
                actor = policy_loss_backward(
                    model,
                    groups,
                    cfg.algo,
                    old,
                    c.ref_model,
                    scale=d.world * local / max(loss_tokens, 1.0),
                    temperature=temperature,
                    min_passes=passes,
                )
                grad_norm = _grad_norm(model, cfg.trainer.grad_clip)
                finite = (
                    all_reduce(
                        [0.0 if math.isfinite(grad_norm) and math.isfinite(actor["loss"]) else 1.0], d, "max"
                    )[0]
                    == 0.0
                )
                if finite:
                    optimizer.step()
                else:
                    skipped = 1.0
                optimizer.zero_grad(set_to_none=True)
            if not skipped:
                scheduler.step()
        if skipped:
            bad_steps += 1
            log.print(f"[yellow]step {step + 1}: non-finite loss or gradient; update skipped on every rank")
            if bad_steps >= MAX_BAD_STEPS:
                raise ArpoError(
                    f"{bad_steps} consecutive steps had non-finite loss or gradients; stopping "
                    f"(lower trainer.lr, check the reward and data)"
                )
        else:
            bad_steps = 0
        with timer("update_weights"):
            c.sync_rollout_weights()

        step_time = time.perf_counter() - t0
        timer.times["timing_s/step"] = step_time
        records = c.executor.records[calls_before:]
        timer.times["timing_s/tools"] = sum(r.latency_s for r in records)
        metrics = {
            **rollout_stats(groups),
            **entropy_metrics(groups, cfg.rollout.k),
            **rollout_engine,
            **_reward_metrics(groups),
            **_actor_metrics(actor, grad_norm, scheduler.get_last_lr()[0], skipped),
            "rollout/logprob_mismatch": _logprob_mismatch(groups, old),
            "perf/tokens_per_s": sum(len(g.prompt_ids) + len(t) for g in groups for t in g.trajectories)
            / step_time,
            **timer.times,
        }
        if (
            cfg.trainer.eval_every
            and (step + 1) % cfg.trainer.eval_every == 0
            and step + 1 < cfg.trainer.steps
        ):
            metrics.update(evaluate(c, engine, cfg, d, step + 1))
        metrics = reduce_metrics(metrics, d)
        log.log(step + 1, metrics)
        log.samples(step + 1, _samples(tok, groups, cfg.trainer.log_samples) if d.is_main else [])
        traj_log.log(step + 1, groups)

        if cfg.trainer.save_every and (
            (step + 1) % cfg.trainer.save_every == 0 or step + 1 == cfg.trainer.steps
        ):
            last_saved = ckpt.save_checkpoint(
                cfg.run_dir,
                step + 1,
                model,
                tok,
                optimizer,
                scheduler,
                {"eval_before": state["eval_before"]},
                to_yaml(cfg),
                d,
                cfg.trainer.keep_last,
            )

    eval_after = evaluate(c, engine, cfg, d, cfg.trainer.steps)
    log.log(cfg.trainer.steps, eval_after)
    log.close()
    c.executor.shutdown()
    summary = {
        "model": cfg.model.path,
        "task": cfg.data.train,
        "steps": cfg.trainer.steps,
        "wall_time_s": time.time() - t_start,
        "eval_before": _strip(state["eval_before"]),
        "eval_after": _strip(eval_after),
        "checkpoint": last_saved,
    }
    if d.is_main:
        plot_metrics(cfg.run_dir)
        path = write_summary(cfg.run_dir, summary)
        log.print(open(path).read())
    return summary


def _strip(m: dict) -> dict:
    return {k.removeprefix("val/"): v for k, v in m.items()}


def _grad_norm(model, max_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def _reward_metrics(groups) -> dict:
    rewards = torch.tensor([t.reward for g in groups for t in g.trajectories], dtype=torch.float64)
    acc = [float(t.reward_info.get("acc", t.reward > 0)) for g in groups for t in g.trajectories]
    return {
        "reward/mean": rewards.mean().item(),
        "reward/max": rewards.max().item(),
        "reward/min": rewards.min().item(),
        "reward/accuracy": sum(acc) / len(acc),
    }


def _actor_metrics(actor: dict, grad_norm: float, lr: float, skipped: float) -> dict:
    names = {"loss": "pg_loss"}
    out = {f"actor/{names.get(k, k)}": v for k, v in actor.items() if k != "frac_reward_zero_std"}
    if "frac_reward_zero_std" in actor:
        out["frac_reward_zero_std"] = actor["frac_reward_zero_std"]
    out.update({"actor/grad_norm": grad_norm, "actor/lr": lr, "actor/skipped": skipped})
    return out


def _logprob_mismatch(groups, old) -> float:
    diffs = [
        abs(a - b)
        for g, og in zip(groups, old)
        for t, ot in zip(g.trajectories, og)
        for a, b, m in zip(t.logprobs, ot, t.loss_mask)
        if m
    ]
    return sum(diffs) / len(diffs) if diffs else 0.0


def _samples(tok, groups, n: int) -> list[dict]:
    rows = []
    for g in groups[:n]:
        t = max(g.trajectories, key=lambda t: t.reward)
        rows.append(
            {
                "prompt": tok.decode(g.prompt_ids),
                "response": t.text,
                "reward": t.reward,
                "tool_calls": len(t.tool_calls),
                "finish_reason": t.finish_reason,
                "branches": g.stats.get("branches", 0),
            }
        )
    return rows
