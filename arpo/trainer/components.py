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
from arpo.rollout.build import build_engine
from arpo.rollout.vllm_engine import require_vllm
from arpo.tools.executor import ToolExecutor
from arpo.tools.parsers import make_parser
from arpo.tools.registry import build_tools
from arpo.trainer.batches import prompt_ids
from arpo.trainer.distributed import Dist, full_parameters, shard_model


@dataclass
class Components:
    model: torch.nn.Module  # the policy being trained (FSDP2-sharded when world > 1)
    tokenizer: Any
    engine: Any  # the rollout engine (native sampler or vLLM), see arpo.rollout.build
    parser: Any
    executor: ToolExecutor
    reward_fn: Any
    train_data: list[Example]
    val_data: list[Example]
    ref_model: torch.nn.Module | None = None

    def sync_rollout_weights(self) -> None:
        """Make the engine see the updated weights (under FSDP2 every rank must call this: each
        tensor is all-gathered as the engine consumes it)."""
        self.engine.update_weights(full_parameters(self.model))


def validate(cfg: Config) -> None:
    """Checks that need no model or data, so a bad recipe fails at once."""
    check_rollout_config(cfg.rollout)
    if cfg.rollout.engine == "vllm":
        require_vllm()
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
    # Built from whole tensors, before sharding. The native sampler runs `model` itself in a single
    # process (in-place optimizer updates are seen for free) and its own copy under FSDP2.
    rollout_model = model
    if d.enabled and cfg.rollout.engine == "native":
        rollout_model = copy.deepcopy(model).eval().requires_grad_(False)
    engine = build_engine(cfg, rollout_model, tokenizer, d.world)
    if d.enabled:
        shard_model(model, d, cfg.trainer.mixed_precision)
        if ref_model is not None:
            shard_model(ref_model, d, cfg.trainer.mixed_precision)
    model.train()
    return Components(model, tokenizer, engine, parser, executor, reward_fn, train_data, val_data, ref_model)
