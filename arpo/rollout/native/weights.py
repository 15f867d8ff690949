"""The tensors a native forward step reads, gathered once from a Hugging Face Llama / Qwen2 / Qwen3 model.

In the model's own dtype the tensors are the model's parameters themselves (no copy), so in-place
weight updates by the trainer are seen by the next step. With another compute dtype (bfloat16 on a
float32 policy) they are cast copies, refreshed by `StepWeights.refresh()` after each update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LayerWeights:
    """One decoder layer: `attn_in` feeds the norm + q/k/v projection, `mlp_in` the rest of the layer."""

    attn_in: tuple  # input norm, q, k, v, q bias, k bias, v bias, q norm, k norm (biases / norms may be None)
    mlp_in: tuple  # o, post-attention norm, gate, up, down


def _layer_sources(layer) -> LayerWeights:
    attn, mlp = layer.self_attn, layer.mlp
    qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
    head_norms = (attn.q_norm.weight, attn.k_norm.weight) if hasattr(attn, "q_norm") else (None, None)
    return LayerWeights(
        (layer.input_layernorm.weight, *(p.weight for p in qkv), *(p.bias for p in qkv), *head_norms),
        (attn.o_proj.weight, layer.post_attention_layernorm.weight, mlp.gate_proj.weight, mlp.up_proj.weight,
         mlp.down_proj.weight),
    )  # fmt: skip


class StepWeights:
    def __init__(self, model, dtype: torch.dtype | None = None):
        self.model = model
        self.dtype = dtype or next(model.parameters()).dtype
        self.refresh()

    def _cast(self, tensor):
        if tensor is None or tensor.dtype == self.dtype:
            return tensor
        return tensor.detach().to(self.dtype)

    def refresh(self) -> None:
        """(Re)read the model's parameters: a no-op for shared tensors, a cast copy otherwise."""
        decoder = self.model.get_decoder()
        self.embed = self._cast(decoder.embed_tokens.weight)
        self.final_norm = self._cast(decoder.norm.weight)
        head = self.model.get_output_embeddings().weight
        self.lm_head = self.embed if head is decoder.embed_tokens.weight else self._cast(head)
        self.layers = []
        for layer in decoder.layers:
            src = _layer_sources(layer)
            self.layers.append(
                LayerWeights(tuple(map(self._cast, src.attn_in)), tuple(map(self._cast, src.mlp_in)))
            )

    @property
    def copied(self) -> bool:
        return self.embed is not self.model.get_decoder().embed_tokens.weight
