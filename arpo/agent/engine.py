"""The rollout engine a config names (`rollout.engine`), built from the loaded policy."""

from __future__ import annotations

import os
import shutil
import tempfile

from arpo.config import Config
from arpo.models.export import export_hf
from arpo.models.loading import resolve


def build_engine(cfg: Config, model, tokenizer, world_size: int = 1):
    """The native sampler runs `model` itself; vLLM loads the policy's weights once here, from the
    model directory when `model.path` is one, else from a temporary export of `model`."""
    if cfg.rollout.engine == "native":
        from arpo.rollout.engine import Engine

        return Engine(model, tokenizer, cfg.rollout.sampler)

    from arpo.rollout.vllm_engine import VllmEngine

    r = cfg.rollout
    max_len = r.vllm.max_model_len
    if not max_len and cfg.data.max_prompt_tokens > 0:
        max_len = cfg.data.max_prompt_tokens + r.max_response_tokens + 1  # the rollout samples one past
    source = resolve(cfg.model.path)
    export_dir = None
    if source.kind != "hf":  # a tiny test model or GGUF: vLLM reads a safetensors directory
        export_dir = tempfile.mkdtemp(prefix="arpo-vllm-model-")
        path = export_hf(model, tokenizer, os.path.join(export_dir, "model"))
    else:
        path = source.path
    try:
        return VllmEngine(
            path,
            tokenizer,
            r.vllm,
            dtype=cfg.model.dtype,
            max_model_len=max_len,
            seed=cfg.seed,
            world_size=world_size,
        )
    finally:
        if export_dir:  # vLLM has loaded the weights
            shutil.rmtree(export_dir, ignore_errors=True)
