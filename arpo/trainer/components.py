"""Builds what a training run needs from its config (data, reward, policy, optimizer, agent),
failing before any compute on bad input."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from arpo.agent.engine import build_engine
from arpo.agent.prompts import fitting_prompts
from arpo.agent.rollout import Agent
from arpo.agent.tools import agent_executor, agent_parser
from arpo.config import Config
from arpo.data import Example, load_dataset
from arpo.errors import ConfigError
from arpo.models import load_model
from arpo.rewards import load_reward
from arpo.rollout.vllm import require_vllm
from arpo.trainer.distributed import Dist, full_parameters, shard_model
from arpo.trainer.optim import build_optimizer


@dataclass
class Learner:
    """The policy being trained (FSDP2-sharded when world > 1), its optimizer and schedule, and the
    frozen reference policy when the loss has a KL term."""

    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ref_model: torch.nn.Module | None = None


@dataclass
class Components:
    learner: Learner
    agent: Agent
    train_data: list[Example]
    val_data: list[Example]

    def sync_rollout_weights(self) -> None:
        """Make the engine see the updated weights (under FSDP2 every rank must call this: each
        tensor is all-gathered as the engine consumes it)."""
        self.agent.engine.update_weights(full_parameters(self.learner.model))


def _load_data(cfg: Config, world: int) -> tuple[list[Example], list[Example]]:
    if cfg.data.prompts_per_step % world:
        raise ConfigError(
            f"data.prompts_per_step={cfg.data.prompts_per_step} must be a multiple of the world size "
            f"{world} (whole groups stay on one rank)"
        )
    train_data = load_dataset(cfg.data.train, "train", cfg.data)
    val_data = load_dataset(cfg.data.val, "val", cfg.data)
    if not train_data:
        raise ConfigError(f"data.train={cfg.data.train!r} has no examples")
    return train_data, val_data


def _engine(cfg: Config, model: torch.nn.Module, tokenizer, dist: Dist):
    """Built from whole tensors, before sharding. The native sampler runs `model` itself in a single
    process (in-place optimizer updates are seen for free) and its own copy under FSDP2."""
    rollout_model = model
    if dist.enabled and cfg.rollout.engine == "native":
        rollout_model = copy.deepcopy(model).eval().requires_grad_(False)
    return build_engine(
        cfg.rollout,
        cfg.model,
        rollout_model,
        tokenizer,
        max_prompt_tokens=cfg.data.max_prompt_tokens,
        seed=cfg.seed,
        world_size=dist.world,
    )


def _learner(cfg: Config, model: torch.nn.Module, tokenizer, ref_model, dist: Dist) -> Learner:
    """Shards the policy (and the reference) under FSDP2, then builds the optimizer over it."""
    if dist.enabled:
        shard_model(model, dist, cfg.trainer.mixed_precision)
        if ref_model is not None:
            shard_model(ref_model, dist, cfg.trainer.mixed_precision)
    model.train()
    trainer = cfg.trainer
    optimizer, scheduler = build_optimizer(model, trainer.lr, trainer.weight_decay, trainer.warmup_steps)
    return Learner(model, tokenizer, optimizer, scheduler, ref_model)


def build(cfg: Config, dist: Dist) -> Components:
    if cfg.rollout.engine == "vllm":
        require_vllm()
    train_data, val_data = _load_data(cfg, dist.world)
    reward_fn = load_reward(cfg.reward)
    executor = agent_executor(cfg.tools, train_data)  # MCP servers start here, before the model loads
    try:
        return _build_policy(cfg, dist, executor, reward_fn, train_data, val_data)
    except BaseException:
        executor.shutdown()  # stops the MCP servers that started
        raise


def _build_policy(cfg: Config, dist: Dist, executor, reward_fn, train_data, val_data) -> Components:
    model, tokenizer = load_model(cfg.model)
    parser = agent_parser(cfg.tools, executor, tokenizer, train_data)
    train_data = fitting_prompts(train_data, tokenizer, parser, cfg.data.max_prompt_tokens, "train")
    val_data = fitting_prompts(val_data, tokenizer, parser, cfg.data.max_prompt_tokens, "held-out")
    model.to(dist.device)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.algo.kl_coef > 0 else None
    if cfg.trainer.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    engine = _engine(cfg, model, tokenizer, dist)
    learner = _learner(cfg, model, tokenizer, ref_model, dist)
    agent = Agent(tokenizer, engine, parser, executor, reward_fn, cfg.tools.result_max_tokens)
    return Components(learner, agent, train_data, val_data)
