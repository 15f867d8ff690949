"""Triton kernels of `logprob_entropy_from_logits` (imported lazily: importing this imports triton).

Forward: one program per row streams vocabulary tiles keeping the running max `m`, `s = sum e^(z-m)`
and `b = sum e^(z-m) z` of `z = logits / T`, then writes `logp = z_y - lse`, `H = lse - b/s` and, for
backward, `lse` and `b/s`. Backward: one program per (row, run of vocabulary tiles) writes
`dlogits = (g_logp * (onehot(y) - p) - g_H * p * (z - b/s)) / T`. Logits of -inf (masked vocabulary)
contribute nothing and never produce NaN.

The backward may write over its own input (`dlogits` a view of the same bytes: the same dtype, or
another of the same width, as bf16 dz over fp16 logits). With `offsets` the logits are stored relative
to a per-row value of each tile of `tile_cols` columns (`_linear_triton.forward_keeping_logits`): the
logit is `logits + offsets[row, col // tile_cols]`.
"""

import torch
import triton
import triton.language as tl

from ._common import interpreting


@triton.jit
def _forward_kernel(
    logits_ptr,
    y_ptr,
    logp_ptr,
    ent_ptr,
    lse_ptr,
    mean_ptr,
    V,
    stride,
    inv_temp,
    ignore_index,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0)
    row_ptr = logits_ptr + row.to(tl.int64) * stride
    m = float("-inf")
    s = 0.0
    b = 0.0
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        z = tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_temp
        m_new = tl.maximum(m, tl.max(z, axis=0))
        # While every logit so far is -inf, shift by 0 so that exp() stays 0 instead of NaN.
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        e = tl.exp(z - shift)
        rescale = tl.exp(m - shift)
        s = s * rescale + tl.sum(e, axis=0)
        b = b * rescale + tl.sum(e * tl.where(z > float("-inf"), z, 0.0), axis=0)
        m = m_new
    lse = m + tl.log(s)
    mean_z = b / s
    y = tl.load(y_ptr + row)
    active = y != ignore_index
    z_y = tl.load(row_ptr + y, mask=active, other=0.0).to(tl.float32) * inv_temp
    tl.store(logp_ptr + row, tl.where(active, z_y - lse, 0.0))
    tl.store(ent_ptr + row, tl.where(active, lse - mean_z, 0.0))
    tl.store(lse_ptr + row, lse)
    tl.store(mean_ptr + row, mean_z)


@triton.jit
def _backward_kernel(
    logits_ptr,
    y_ptr,
    lse_ptr,
    mean_ptr,
    glp_ptr,
    gent_ptr,
    dlogits_ptr,
    offsets_ptr,
    V,
    stride,
    stride_d,
    stride_o,
    inv_temp,
    ignore_index,
    BLOCK_V: tl.constexpr,
    HAS_OFFSETS: tl.constexpr,
    TILE_COLS: tl.constexpr,
):
    row = tl.program_id(0)
    y = tl.load(y_ptr + row)
    active = y != ignore_index
    lse = tl.load(lse_ptr + row)
    mean_z = tl.load(mean_ptr + row)
    g_lp = tl.load(glp_ptr + row)
    g_ent = tl.load(gent_ptr + row)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    col_ok = cols < V
    x = tl.load(logits_ptr + row.to(tl.int64) * stride + cols, mask=col_ok, other=float("-inf"))
    x = x.to(tl.float32)
    if HAS_OFFSETS:
        x += tl.load(offsets_ptr + row.to(tl.int64) * stride_o + cols // TILE_COLS, mask=col_ok, other=0.0)
    z = x * inv_temp
    p = tl.exp(z - lse)
    # A -inf logit has p == 0: leave its centred logit at 0 rather than form 0 * inf.
    centred = tl.where(p > 0.0, z - mean_z, 0.0)
    dz = -p * (g_lp + g_ent * centred)
    dz = tl.where(cols == y, dz + g_lp, dz)
    dz = tl.where(active, dz * inv_temp, 0.0)
    out = dlogits_ptr + row.to(tl.int64) * stride_d + cols
    tl.store(out, dz.to(dlogits_ptr.dtype.element_ty), mask=col_ok)


def _block_v(vocab: int) -> int:
    # Small tiles in the interpreter so that tests cross several tiles at small V.
    return min(256 if interpreting() else 4096, triton.next_power_of_2(vocab))


def forward(logits: torch.Tensor, labels: torch.Tensor, inv_temp: float, ignore_index: int):
    """(logp, entropy, lse, b/s), each [N] fp32."""
    n, vocab = logits.shape
    out = torch.empty((4, n), dtype=torch.float32, device=logits.device)
    if n:
        _forward_kernel[(n,)](
            logits,
            labels,
            out[0],
            out[1],
            out[2],
            out[3],
            vocab,
            logits.stride(0),
            inv_temp,
            ignore_index,
            BLOCK_V=_block_v(vocab),
        )
    return out.unbind(0)


def backward(
    logits,
    labels,
    lse,
    mean_z,
    g_logprob,
    g_entropy,
    inv_temp: float,
    ignore_index: int,
    dlogits,
    offsets=None,
):
    """Writes d logits into `dlogits` [N, V]: a new tensor, or a view of `logits`' own bytes (see the
    module docstring); `offsets` = (offsets [N, tiles] fp32, tile_cols) for tile-relative logits."""
    n, vocab = logits.shape
    if n:
        block = min(_block_v(vocab), 1024)
        table, tile_cols = (lse, 1) if offsets is None else offsets
        _backward_kernel[(n, triton.cdiv(vocab, block))](
            logits,
            labels,
            lse,
            mean_z,
            g_logprob,
            g_entropy,
            dlogits,
            table,
            vocab,
            logits.stride(0),
            dlogits.stride(0),
            table.stride(0),
            inv_temp,
            ignore_index,
            BLOCK_V=block,
            HAS_OFFSETS=offsets is not None,
            TILE_COLS=tile_cols,
        )
