"""Builds what a run needs from its config, failing before any compute on bad input."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from arpo.config import Config
from arpo.data import Example, load_dataset
from arpo.errors import ConfigError
from arpo.models import load_model
from arpo.rewards import load_reward
from arpo.rollout.arpo_rollout import check_rollout_config
from arpo.tools.executor import ToolExecutor
from arpo.tools.parsers import make_parser
from arpo.tools.registry import build_tools
from arpo.trainer.batches import prompt_ids
from arpo.trainer.distributed import Dist, full_parameters, shard_model


@dataclass
class Components:
    model: torch.nn.Module  # the policy being trained (FSDP2-sharded when world > 1)
    tokenizer: Any
    rollout_model: torch.nn.Module  # what the rollout engine reads: `model` itself, or a full copy
    parser: Any
    executor: ToolExecutor
    reward_fn: Any
    train_data: list[Example]
    val_data: list[Example]
    ref_model: torch.nn.Module | None = None

    def sync_rollout_weights(self) -> None:
        """Make the engine see the updated weights (a no-op when it shares the policy's tensors)."""
        if self.rollout_model is self.model:
            return
        params = dict(self.rollout_model.named_parameters())
        with torch.no_grad():
            for name, full in full_parameters(self.model):
                params[name].copy_(full)


def validate(cfg: Config) -> None:
    """Checks that need no model or data, so a bad recipe fails at once."""
    check_rollout_config(cfg.rollout)
    if cfg.rollout.engine != "native":
        raise ConfigError(
            f"rollout.engine={cfg.rollout.engine} is not available yet; use rollout.engine=native"
        )
    t = cfg.trainer
    if t.steps < 1:
        raise ConfigError(f"trainer.steps must be >= 1, got {t.steps}")
    if t.save_every < 0 or t.keep_last < 1:
        raise ConfigError("trainer.save_every must be >= 0 and trainer.keep_last >= 1")
    if cfg.data.prompts_per_step < 1:
        raise ConfigError(f"data.prompts_per_step must be >= 1, got {cfg.data.prompts_per_step}")


def _tools_for(cfg: Config, examples: list[Example]):
    """A generated search task ships its own corpus: point an unconfigured BM25 search tool at it."""
    corpus = examples[0].extra.get("search_corpus") if examples else None
    if corpus and "search" in cfg.tools.enabled and not cfg.tools.search.corpus:
        search = dataclasses.replace(cfg.tools.search, backend="bm25", corpus=corpus)
        return dataclasses.replace(cfg.tools, search=search)
    return cfg.tools


def agent_tools(cfg: Config, examples: list[Example]) -> tuple[Any, ToolExecutor]:
    """The tool-call parser and executor an agent on `examples` uses."""
    registry = build_tools(_tools_for(cfg, examples))
    return make_parser(cfg.tools.format, registry), ToolExecutor(registry, cfg.tools.workers)


def fitting_prompts(examples: list[Example], tokenizer, max_tokens: int, what: str) -> list[Example]:
    """Drop prompts longer than `data.max_prompt_tokens` (as verl does), saying how many."""
    if max_tokens <= 0:
        return examples
    kept = [ex for ex in examples if len(prompt_ids(tokenizer, ex)) <= max_tokens]
    if len(kept) < len(examples):
        print(
            f"arpo: dropped {len(examples) - len(kept)} of {len(examples)} {what} prompts longer than "
            f"data.max_prompt_tokens={max_tokens}"
        )
    if examples and not kept:
        raise ConfigError(f"every {what} prompt is longer than data.max_prompt_tokens={max_tokens}")
    return kept


def build(cfg: Config, d: Dist) -> Components:
    validate(cfg)
    if cfg.data.prompts_per_step % d.world:
        raise ConfigError(
            f"data.prompts_per_step={cfg.data.prompts_per_step} must be a multiple of the world size "
            f"{d.world} (whole groups stay on one rank)"
        )
    train_data = load_dataset(cfg.data.train, "train", cfg.data)
    val_data = load_dataset(cfg.data.val, "val", cfg.data)
    if not train_data:
        raise ConfigError(f"data.train={cfg.data.train!r} has no examples")
    reward_fn = load_reward(cfg.reward)
    parser, executor = agent_tools(cfg, train_data)

    model, tokenizer = load_model(cfg.model)
    train_data = fitting_prompts(train_data, tokenizer, cfg.data.max_prompt_tokens, "train")
    val_data = fitting_prompts(val_data, tokenizer, cfg.data.max_prompt_tokens, "held-out")
    model.to(d.device)
    ref_model = None
    if cfg.algo.kl_coef > 0:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    if cfg.trainer.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if d.enabled:
        # The engine needs whole tensors: it keeps its own copy, refreshed after every update.
        rollout_model = copy.deepcopy(model).eval().requires_grad_(False)
        shard_model(model, d, cfg.trainer.mixed_precision)
        if ref_model is not None:
            shard_model(ref_model, d, cfg.trainer.mixed_precision)
    else:
        rollout_model = model  # shared tensors: in-place optimizer updates are seen for free
    model.train()
    return Components(
        model, tokenizer, rollout_model, parser, executor, reward_fn, train_data, val_data, ref_model
    )
