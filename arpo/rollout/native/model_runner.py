"""Forward pass of a Hugging Face Llama / Qwen2 / Qwen3 causal LM over a paged KV cache.

The runner reads the in-memory `transformers` model's parameters at every call (no copies), so
weight updates made by the trainer are seen by the next step. It only computes the logits of the
positions asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from arpo.errors import ModelLoadError

from . import kv_ops
from .paged_attention import AttentionChunk, AttentionMetadata, flash_attn_available, paged_attention
from .rope import apply_rope, cos_sin, inverse_frequencies

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")


@dataclass
class Chunk:
    """Tokens of one sequence to compute, at positions [start, start + len(token_ids))."""

    token_ids: list[int]
    start: int
    block_table: list[int]
    slots: list[int]
    want_logits: bool  # return the logits of the chunk's last position


def rms_norm(x: torch.Tensor, norm: torch.nn.Module, eps: float) -> torch.Tensor:
    # In float32 and cast back before the weight, as transformers' Llama/Qwen RMSNorm does.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return norm.weight * h.to(x.dtype)


def linear(x: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int, device: torch.device | None = None):
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelLoadError(
                f"model type {config.model_type!r} is not supported by the native sampler; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if getattr(config, "use_sliding_window", False):
            raise ModelLoadError("sliding-window attention is not supported by the native sampler")
        self.model = model
        self.decoder = model.get_decoder()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.eps = config.rms_norm_eps
        self.device = device or next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.block_size = block_size
        self.inv_freq = inverse_frequencies(config, self.head_dim).to(self.device)
        layers = len(self.decoder.layers)
        shape = (layers, 2, num_blocks, block_size, self.num_kv_heads, self.head_dim)
        # Zeros, not empty: masked padding positions are read by the batched decode and must be finite.
        self.kv_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.use_flash = flash_attn_available(self.device, block_size)

    @property
    def kv_cache_bytes_per_block(self) -> int:
        return self.kv_cache[:, :, 0].numel() * self.kv_cache.element_size()

    def copy_blocks(self, pairs: list[tuple[int, int]]) -> None:
        kv_ops.copy_blocks(self.kv_cache, pairs)

    @torch.inference_mode()
    def forward(self, chunks: list[Chunk]) -> torch.Tensor:
        """float32 logits `[number of chunks with want_logits, vocab]`, in chunk order."""
        dev = self.device
        ids, positions, slots, attn_chunks, logit_rows = [], [], [], [], []
        for c in chunks:
            row = len(ids)
            ids += c.token_ids
            positions += range(c.start, c.start + len(c.token_ids))
            slots += c.slots
            attn_chunks.append(
                AttentionChunk(row, len(c.token_ids), c.start + len(c.token_ids), c.block_table)
            )
            if c.want_logits:
                logit_rows.append(len(ids) - 1)
        meta = AttentionMetadata(attn_chunks, self.block_size, dev, self.use_flash)
        slots_t = torch.tensor(slots, dtype=torch.long, device=dev)
        cos, sin = cos_sin(self.inv_freq, torch.tensor(positions, device=dev), self.dtype)
        tokens = len(ids)
        h = F.embedding(torch.tensor(ids, dtype=torch.long, device=dev), self.decoder.embed_tokens.weight)
        for i, layer in enumerate(self.decoder.layers):
            attn = layer.self_attn
            x = rms_norm(h, layer.input_layernorm, self.eps)
            q = linear(x, attn.q_proj).view(tokens, self.num_heads, self.head_dim)
            k = linear(x, attn.k_proj).view(tokens, self.num_kv_heads, self.head_dim)
            v = linear(x, attn.v_proj).view(tokens, self.num_kv_heads, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before rotating it
                q, k = rms_norm(q, attn.q_norm, self.eps), rms_norm(k, attn.k_norm, self.eps)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            k_cache, v_cache = self.kv_cache[i, 0], self.kv_cache[i, 1]
            kv_ops.write_kv(k_cache, v_cache, k, v, slots_t)
            o = paged_attention(q, k_cache, v_cache, meta)
            h = h + linear(o.reshape(tokens, -1), attn.o_proj)
            x = rms_norm(h, layer.post_attention_layernorm, self.eps)
            mlp = layer.mlp
            h = h + linear(mlp.act_fn(linear(x, mlp.gate_proj)) * linear(x, mlp.up_proj), mlp.down_proj)
        h = rms_norm(h[logit_rows], self.decoder.norm, self.eps)
        return linear(h, self.model.get_output_embeddings()).float()
