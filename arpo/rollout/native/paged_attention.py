"""Attention of new query tokens over a paged KV cache.

Three paths, same layout (`[num_blocks, block_size, kv_heads, head_dim]` per layer):
- decode tokens on CPU with the `csrc/` extension: `torch.ops.arpo.paged_decode_attention` reads
  each sequence's blocks in place through its block table (no gather, no padding).
- torch: gather each sequence's blocks and run SDPA (prefill chunks, one call each; decode tokens
  without the extension or on GPU without flash-attn, in one padded, masked SDPA call).
- flash-attn `flash_attn_with_kvcache(block_table=...)` on CUDA when installed and the block size
  is a multiple of 256 (flash-attn's paged-KV requirement).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import kv_ops


@dataclass
class AttentionChunk:
    """One sequence's new tokens in the flattened batch: rows [row, row + q_len) at the end of its context."""

    row: int
    q_len: int
    ctx_len: int  # tokens in the cache after this chunk was written
    block_table: list[int]


class AttentionMetadata:
    """Index tensors shared by all layers of one forward pass."""

    def __init__(self, chunks: list[AttentionChunk], block_size: int, device: torch.device, use_flash: bool):
        decode = [c for c in chunks if c.q_len == 1]
        self.prefill = [c for c in chunks if c.q_len > 1]
        self.decode_rows = torch.tensor([c.row for c in decode], dtype=torch.long, device=device)
        width = max((len(c.block_table) for c in decode), default=0)
        table = [c.block_table + [0] * (width - len(c.block_table)) for c in decode]
        self.decode_tables = torch.tensor(table, dtype=torch.long, device=device).view(len(decode), width)
        self.decode_ctx = torch.tensor([c.ctx_len for c in decode], dtype=torch.long, device=device)
        self.block_size = block_size
        self.all_decode = not self.prefill
        self.prefill_tables = [
            torch.tensor(c.block_table, dtype=torch.long, device=device) for c in self.prefill
        ]
        self.use_flash = use_flash

    @property
    def decode_mask(self) -> torch.Tensor:
        """`[B, 1, 1, width * block_size]`: padded positions (past a sequence's context) are masked
        out; block 0 stands in for missing blocks."""
        width = self.decode_tables.shape[1] * self.block_size
        positions = torch.arange(width, device=self.decode_ctx.device)
        return (positions[None, :] < self.decode_ctx[:, None])[:, None, None]


def flash_attn_available(device: torch.device, block_size: int) -> bool:
    if device.type != "cuda" or block_size % 256:
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def paged_attention(q, k_cache, v_cache, meta: AttentionMetadata) -> torch.Tensor:
    """`q`: `[T, heads, head_dim]`, already rotated; the chunks' K/V are already in the cache."""
    if meta.use_flash:
        return _flash(q, k_cache, v_cache, meta)
    ops = kv_ops.extension() if q.device.type == "cpu" else None
    native_decode = ops is not None and hasattr(ops, "paged_decode_attention")
    if native_decode and meta.all_decode:  # the usual decode step: no row gathering either
        return ops.paged_decode_attention(
            q, k_cache, v_cache, meta.decode_tables, meta.decode_ctx, q.shape[-1] ** -0.5
        )
    out = torch.empty_like(q)
    if meta.decode_rows.numel() and native_decode:
        query = q[meta.decode_rows]
        scale = q.shape[-1] ** -0.5
        out[meta.decode_rows] = ops.paged_decode_attention(
            query, k_cache, v_cache, meta.decode_tables, meta.decode_ctx, scale
        )
    elif meta.decode_rows.numel():
        bsz = meta.decode_rows.numel()
        keys = k_cache[meta.decode_tables].flatten(1, 2).transpose(1, 2)  # [B, kv_heads, L, D]
        values = v_cache[meta.decode_tables].flatten(1, 2).transpose(1, 2)
        query = q[meta.decode_rows].view(bsz, -1, 1, q.shape[-1])
        o = F.scaled_dot_product_attention(query, keys, values, attn_mask=meta.decode_mask, enable_gqa=True)
        out[meta.decode_rows] = o.squeeze(2)
    for chunk, table in zip(meta.prefill, meta.prefill_tables):
        keys = k_cache[table].flatten(0, 1)[: chunk.ctx_len].transpose(0, 1)[None]  # [1, kv_heads, ctx, D]
        values = v_cache[table].flatten(0, 1)[: chunk.ctx_len].transpose(0, 1)[None]
        query = q[chunk.row : chunk.row + chunk.q_len].transpose(0, 1)[None]
        past = chunk.ctx_len - chunk.q_len
        if past == 0:
            o = F.scaled_dot_product_attention(query, keys, values, is_causal=True, enable_gqa=True)
        else:  # causal, aligned to the end: query i sees keys up to past + i
            rows = torch.arange(chunk.q_len, device=q.device)[:, None] + past
            mask = torch.arange(chunk.ctx_len, device=q.device)[None, :] <= rows
            o = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, enable_gqa=True)
        out[chunk.row : chunk.row + chunk.q_len] = o[0].transpose(0, 1)
    return out


def _flash(q, k_cache, v_cache, meta: AttentionMetadata) -> torch.Tensor:
    from flash_attn import flash_attn_with_kvcache

    out = torch.empty_like(q)
    if meta.decode_rows.numel():
        o = flash_attn_with_kvcache(
            q[meta.decode_rows].unsqueeze(1),
            k_cache,
            v_cache,
            cache_seqlens=meta.decode_ctx.int(),
            block_table=meta.decode_tables.int(),
            causal=True,
        )
        out[meta.decode_rows] = o.squeeze(1)
    for chunk, table in zip(meta.prefill, meta.prefill_tables):
        o = flash_attn_with_kvcache(
            q[chunk.row : chunk.row + chunk.q_len][None],
            k_cache,
            v_cache,
            cache_seqlens=torch.tensor([chunk.ctx_len], dtype=torch.int32, device=q.device),
            block_table=table.int()[None],
            causal=True,  # flash-attn aligns the causal mask to the end of the cache
        )
        out[chunk.row : chunk.row + chunk.q_len] = o[0]
    return out
