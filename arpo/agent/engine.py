"""The rollout engine `rollout.engine` names, built from the loaded policy and the config sections it
needs (rollout, model), never the whole config."""

from __future__ import annotations

import os
import shutil
import tempfile

from arpo.config.model import ModelConfig
from arpo.config.rollout import RolloutConfig
from arpo.models.export import export_hf
from arpo.models.loading import resolve
from arpo.rollout.interface import RolloutEngine


def build_engine(
    rollout: RolloutConfig,
    model_cfg: ModelConfig,
    model,
    tokenizer,
    *,
    max_prompt_tokens: int,
    seed: int,
    world_size: int = 1,
) -> RolloutEngine:
    """The native sampler runs `model` itself; vLLM loads the policy's weights once here, from the
    model directory when `model.path` is one, else from a temporary export of `model`."""
    if rollout.engine == "native":
        from arpo.rollout.native import NativeEngine

        return NativeEngine(model, tokenizer, rollout.sampler)

    from arpo.rollout.vllm import VllmEngine

    max_len = rollout.vllm.max_model_len
    if not max_len and max_prompt_tokens > 0:
        max_len = max_prompt_tokens + rollout.max_response_tokens + 1  # the rollout samples one past
    source = resolve(model_cfg.path)
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
            rollout.vllm,
            dtype=model_cfg.dtype,
            max_model_len=max_len,
            seed=seed,
            world_size=world_size,
        )
    finally:
        if export_dir:  # vLLM has loaded the weights
            shutil.rmtree(export_dir, ignore_errors=True)
