"""Export any loaded causal LM to a Hugging Face safetensors directory.

`save_pretrained` refuses models loaded from GGUF (transformers marks them as quantized even
after de-quantising), so the weights are written with safetensors directly and the config is
stripped of its GGUF/quantization markers; the result reloads with plain `from_pretrained`.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file


def export_hf(model, tokenizer, out_dir: str, dtype: torch.dtype | None = None, state_dict=None) -> str:
    """Write config, weights (model.safetensors) and tokenizer to `out_dir` atomically.

    `state_dict` overrides the model's own (a full state dict gathered out of FSDP2)."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        config = model.config.__class__.from_dict(model.config.to_dict())
        for attr in ("quantization_config", "gguf_file"):
            if hasattr(config, attr):
                delattr(config, attr)
        if dtype is not None:
            config.dtype = dtype
        # `save_pretrained` records the class; servers such as vLLM pick the architecture from it.
        config.architectures = [type(model).__name__]
        config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        state = {}
        tied = getattr(model.config, "tie_word_embeddings", False)
        for name, t in (model.state_dict() if state_dict is None else state_dict).items():
            if tied and name == "lm_head.weight":
                continue  # reloaded from the embedding; safetensors refuses shared storage
            t = t.detach().to("cpu", dtype or t.dtype).contiguous().clone()
            state[name] = t
        save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
