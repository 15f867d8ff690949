"""How many BFCL conversations run together, and the native sampler's KV cache they need.

A multi-turn conversation keeps its KV cache between answers (generate.py); one evicted meanwhile
would recompute its whole prompt at every answer. So on the native sampler a multi-turn category
runs as many conversations at once as `eval.batch_size` asks and half the free memory (host
memory, or the GPU's) holds at the model's full context, and the sampler's cache is raised to hold
them. Other categories, and vLLM (which manages its own cache), run `eval.batch_size` at once.
"""

from __future__ import annotations

import dataclasses

import psutil
import torch

from arpo.config import Config
from arpo.config.rollout import SamplerConfig
from arpo.eval.bfcl.categories import kind

# The share of free memory a multi-turn category's KV cache may take on the native sampler; the rest
# stays for the model's activations, BFCL's worker and whatever else runs on the machine.
KV_MEMORY_SHARE = 0.5


def kv_bytes_per_token(model, sampler: SamplerConfig) -> int:
    """Bytes of K and V one token takes in the native sampler's cache, over all layers."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    itemsize = 2 if sampler.dtype == "bfloat16" else next(model.parameters()).element_size()
    return config.num_hidden_layers * 2 * kv_heads * head_dim * itemsize


def free_memory_bytes(device: torch.device) -> int:
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available


def multi_turn_slots(cfg: Config, context: int, bytes_per_token: int, free_bytes: int) -> int:
    """Multi-turn conversations run together on the native sampler. Each keeps its KV cache between
    answers (one evicted meanwhile would recompute its whole prompt at every answer), so as many
    run as `eval.batch_size` asks and `KV_MEMORY_SHARE` of the free memory holds at the full
    context, or as the configured cache (`rollout.sampler.kv_cache_tokens`) holds if that is more."""
    sampler = cfg.rollout.sampler
    configured = sampler.num_blocks * sampler.block_size if sampler.num_blocks else sampler.kv_cache_tokens
    fits = int(KV_MEMORY_SHARE * free_bytes) // (context * bytes_per_token)
    return max(1, min(cfg.eval.batch_size, max(configured // context, fits)))


def with_cache_for(cfg: Config, tokens: int) -> Config:
    """The native sampler's cache raised to hold `tokens` (never lowered)."""
    sampler = cfg.rollout.sampler
    configured = sampler.num_blocks or -(-sampler.kv_cache_tokens // sampler.block_size)
    blocks = max(configured, -(-tokens // sampler.block_size))
    rollout = dataclasses.replace(cfg.rollout, sampler=dataclasses.replace(sampler, num_blocks=blocks))
    return dataclasses.replace(cfg, rollout=rollout)


def native_slots(cfg: Config, categories: list[str], model, context: int) -> int:
    """`multi_turn_slots` for this run (0 where no multi-turn category runs on the native sampler)."""
    if cfg.rollout.engine != "native" or all(kind(c) != "multi_turn" for c in categories):
        return 0
    bytes_per_token = kv_bytes_per_token(model, cfg.rollout.sampler)
    return multi_turn_slots(cfg, context, bytes_per_token, free_memory_bytes(next(model.parameters()).device))


def conversations_at_once(cfg: Config, category: str, slots: int) -> int:
    """Conversations of `category` run together: `slots` for multi-turn on the native sampler (see
    `multi_turn_slots`), else `eval.batch_size` (vLLM manages its own cache)."""
    if kind(category) != "multi_turn" or cfg.rollout.engine != "native":
        return cfg.eval.batch_size
    return slots
