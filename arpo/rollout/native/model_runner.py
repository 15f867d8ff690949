"""Forward pass of a Hugging Face Llama / Qwen2 / Qwen3 causal LM over a paged KV cache.

The runner reads the weights gathered by `StepWeights` (the model's own parameters in its dtype, so
weight updates made by the trainer are seen by the next step) and only computes the logits of the
positions asked for. A layer is two pure functions around attention: `project_qkv` (norm, q/k/v,
rope) and `finish_layer` (output projection, MLP, residuals); attention and the KV write run
between them. With `compile_decode`, a step of decode tokens only pads its batch to a power-of-two
bucket and runs those two functions compiled by `torch.compile` (one graph per bucket, shared by
all layers); any other step runs them eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from arpo.errors import ModelLoadError

from .kv_ops import copy_blocks, write_kv
from .paged_attention import AttentionChunk, AttentionMetadata, flash_attn_available, paged_attention
from .rope import apply_rope, cos_sin, inverse_frequencies
from .weights import StepWeights

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")


@dataclass
class Chunk:
    """Tokens of one sequence to compute, at positions [start, start + len(token_ids))."""

    token_ids: list[int]
    start: int
    block_table: list[int]
    slots: list[int]
    want_logits: bool  # return the logits of the chunk's last position


@dataclass
class StepMetadata:
    """Index tensors and rope tables shared by all layers of one forward pass."""

    ids: torch.Tensor  # [rows] (rows = tokens, padded up to the bucket when compiled)
    cos: torch.Tensor
    sin: torch.Tensor
    slots: torch.Tensor  # [tokens]
    attention: AttentionMetadata
    logit_rows: list[int]
    tokens: int
    bucket: int | None  # the compiled batch size, None when eager


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # In float32 and cast back before the weight, as transformers' Llama/Qwen RMSNorm does.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(x, weight, bias)


def decode_bucket(tokens: int, limit: int) -> int:
    """The smallest power of two holding `tokens` (at most `limit`, rounded up to a power of two)."""
    return min(1 << (tokens - 1).bit_length(), 1 << (limit - 1).bit_length())


class ModelRunner:
    def __init__(
        self,
        model,
        num_blocks: int,
        block_size: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        compile_decode: bool = False,
        max_batch: int = 64,
    ):
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelLoadError(
                f"model type {config.model_type!r} is not supported by the native sampler; "
                f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if getattr(config, "use_sliding_window", False):
            raise ModelLoadError("sliding-window attention is not supported by the native sampler")
        self.model = model
        self.weights = StepWeights(model, dtype)
        self.act = model.get_decoder().layers[0].mlp.act_fn
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.eps = config.rms_norm_eps
        self.device = device or next(model.parameters()).device
        self.dtype = self.weights.dtype
        self.block_size = block_size
        self.inv_freq = inverse_frequencies(config, self.head_dim).to(self.device)
        shape = (len(self.weights.layers), 2, num_blocks, block_size, self.num_kv_heads, self.head_dim)
        # Zeros, not empty: masked padding positions are read by the batched decode and must be finite.
        self.kv_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.use_flash = flash_attn_available(self.device, block_size)
        self.max_batch = max_batch
        self.compiled = None
        if compile_decode:
            self.compiled = (
                torch.compile(self.project_qkv, dynamic=False),
                torch.compile(self.finish_layer, dynamic=False),
            )

    @property
    def kv_cache_bytes_per_block(self) -> int:
        return self.kv_cache[:, :, 0].numel() * self.kv_cache.element_size()

    def copy_blocks(self, pairs: list[tuple[int, int]]) -> None:
        copy_blocks(self.kv_cache, pairs)

    # ---- one layer, as two pure functions around attention ------------------------------------
    def project_qkv(self, h, cos, sin, norm, wq, wk, wv, bq, bk, bv, q_norm, k_norm):
        """Rotated q `[T, heads, D]`, k and v `[T, kv_heads, D]` of the layer input `h`."""
        x = rms_norm(h, norm, self.eps)
        q = linear(x, wq, bq).view(-1, self.num_heads, self.head_dim)
        k = linear(x, wk, bk).view(-1, self.num_kv_heads, self.head_dim)
        v = linear(x, wv, bv).view(-1, self.num_kv_heads, self.head_dim)
        if q_norm is not None:  # Qwen3 normalises each head before rotating it
            q, k = rms_norm(q, q_norm, self.eps), rms_norm(k, k_norm, self.eps)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def finish_layer(self, h, attn, wo, post_norm, w_gate, w_up, w_down):
        """The layer's output: `h` plus the attention projection, plus the MLP of the sum."""
        h = h + linear(attn.flatten(1), wo)
        x = rms_norm(h, post_norm, self.eps)
        return h + linear(self.act(linear(x, w_gate)) * linear(x, w_up), w_down)

    # ---- a step -------------------------------------------------------------------------------
    def step_metadata(self, chunks: list[Chunk]) -> StepMetadata:
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
        tokens, bucket = len(ids), None
        if self.compiled is not None and tokens == len(chunks) and tokens <= self.max_batch:
            bucket = decode_bucket(tokens, self.max_batch)
            ids += [0] * (bucket - tokens)  # padding rows: computed, never written or attended
            positions += [0] * (bucket - tokens)
        cos, sin = cos_sin(self.inv_freq, torch.tensor(positions, device=dev), self.dtype)
        return StepMetadata(
            torch.tensor(ids, dtype=torch.long, device=dev),
            cos,
            sin,
            torch.tensor(slots, dtype=torch.long, device=dev),
            AttentionMetadata(attn_chunks, self.block_size, dev, self.use_flash),
            logit_rows,
            tokens,
            bucket,
        )

    @torch.inference_mode()
    def forward(self, chunks: list[Chunk]) -> torch.Tensor:
        """float32 logits `[number of chunks with want_logits, vocab]`, in chunk order."""
        meta = self.step_metadata(chunks)
        project, finish = self.compiled if meta.bucket else (self.project_qkv, self.finish_layer)
        weights, n = self.weights, meta.tokens
        h = F.embedding(meta.ids, weights.embed)
        for i, layer in enumerate(weights.layers):
            q, k, v = project(h, meta.cos, meta.sin, *layer.attn_in)
            k_cache, v_cache = self.kv_cache[i, 0], self.kv_cache[i, 1]
            write_kv(k_cache, v_cache, k[:n], v[:n], meta.slots)
            attn = paged_attention(q[:n], k_cache, v_cache, meta.attention)
            if meta.bucket and meta.bucket > n:
                attn = torch.cat((attn, attn.new_zeros(meta.bucket - n, *attn.shape[1:])))
            h = finish(h, attn, *layer.mlp_in)
        h = rms_norm(h[meta.logit_rows], weights.final_norm, self.eps)
        return linear(h, weights.lm_head).float()
