"""Triton kernels of `linear_logprob_entropy` (imported lazily: importing this module imports triton).

Forward: each program owns a block of tokens and one contiguous split of the vocabulary. It streams
vocabulary tiles of `z = (h @ W.T) / T` (fp32 accumulation) and keeps, per token, the running max
`m`, `s = sum e^(z-m)`, `b = sum e^(z-m) z` and the target logit. The per-split partials are merged
in a fixed order on the host side, so results are deterministic (no atomics). The split index is the
fastest grid axis: the programs resident at one time share a few token blocks (their `h` rows stay in
L2) and walk the splits' weight tiles side by side.

The "forward-logits" variant (`STORE_LOGITS`, for the tree loss's gradient made in the forward) also
keeps every logit tile in an [N, V] buffer, as `x - x_max` per row in a 16-bit type (fp16 for bf16
inputs) with the tile's fp32 max `x_max` per row beside it (`_store_tile`), so that dz can be formed
later from the kept logits while the statistics stay those of the fp32 accumulators.

Backward (`dz` kernel): recompute the logit tiles of one vocabulary chunk and write
`dz = (g_logp * (onehot(y) - p) - g_H * p * (z - b/s)) / T` into a bounded workspace; cuBLAS then does
`dh += dz @ W_chunk` and `dW_chunk = dz.T @ h`. The vocabulary block is the fastest grid axis, so the
resident programs share one token block of `h` and the chunk's weights stay in L2.

Neither kernel accumulates into its output, so any config may be timed on real buffers. Tile configs
come from `_config.py` (pinned per dtype, `ARPO_TRITON_CONFIG` to override or autotune).
"""

import torch
import triton
import triton.language as tl

from . import _config

# Vocabulary splits are multiples of this many columns, itself a multiple of every BLOCK_V.
SPLIT_COLUMNS = 256
# Wave quantisation: the first split count whose programs fill this share of the last wave wins.
WAVE_EFFICIENCY = 0.95


@triton.jit
def _tanh(x):
    """tanh through one exp, finite for every x."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _logit_tile(
    h_ptr,
    w_ptr,
    bias_ptr,
    rows,
    cols,
    row_ok,
    col_ok,
    H,
    stride_h,
    stride_w,
    inv_temp,
    softcap,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
):
    """fp32 tile z[rows, cols] = cap(h[rows] @ W[cols].T + bias[cols]) * inv_temp,
    cap(x) = softcap * tanh(x / softcap) when HAS_SOFTCAP."""
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    # 64-bit row offsets: V * H passes 2^31 for large vocabularies.
    h_rows = h_ptr + rows.to(tl.int64)[:, None] * stride_h
    w_cols = w_ptr + cols.to(tl.int64)[None, :] * stride_w
    for k0 in range(0, H, BLOCK_H):
        ks = k0 + tl.arange(0, BLOCK_H)
        k_ok = ks < H
        h = tl.load(h_rows + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_cols + ks[:, None], mask=col_ok[None, :] & k_ok[:, None], other=0.0)
        acc = tl.dot(h, w, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_SOFTCAP:
        acc = softcap * _tanh(acc / softcap)
    return acc * inv_temp


@triton.jit
def _store_tile(
    logits_ptr, offsets_ptr, stride_logits, stride_offsets, x, x_max, rows, cols, tile, row_ok, col_ok
):
    """Keep a logit tile for the gradient as `x - x_max` per row in the dtype of `logits_ptr`, and x_max
    (fp32) per row and tile: a 16-bit type's rounding then scales with a logit's distance below its
    tile's max (2^-12 of it in fp16), not with the logit's own size. 32-bit element offsets suffice: the
    buffer is one block of the workspace, far below 2^31 elements."""
    out = logits_ptr + rows[:, None] * stride_logits + cols[None, :]
    narrow = (x - x_max[:, None]).to(logits_ptr.dtype.element_ty)
    tl.store(out, narrow, mask=row_ok[:, None] & col_ok[None, :])
    tl.store(offsets_ptr + rows * stride_offsets + tile, x_max, mask=row_ok)


# The partials' plane stride varies with the split count: not specialising on it keeps one compiled
# variant per config, so the variant probed for occupancy is the one that runs.
@triton.jit(do_not_specialize=["part_stride"])
def _linear_forward_kernel(
    h_ptr,
    w_ptr,
    bias_ptr,
    y_ptr,
    parts_ptr,
    part_stride,
    logits_ptr,
    offsets_ptr,
    stride_logits,
    stride_offsets,
    N,
    V,
    H,
    stride_h,
    stride_w,
    inv_temp,
    softcap,
    cols_per_split,
    PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    STORE_LOGITS: tl.constexpr,
):
    split = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_N,), tl.float32)
    b = tl.zeros((BLOCK_N,), tl.float32)
    zy = tl.zeros((BLOCK_N,), tl.float32)
    v_start = split * cols_per_split
    v_end = tl.minimum(v_start + cols_per_split, V)
    for v0 in range(v_start, v_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_ok = cols < v_end
        x = _logit_tile(
            h_ptr,
            w_ptr,
            bias_ptr,
            rows,
            cols,
            row_ok,
            col_ok,
            H,
            stride_h,
            stride_w,
            1.0,
            softcap,
            BLOCK_N,
            BLOCK_V,
            BLOCK_H,
            PRECISION,
            HAS_BIAS,
            HAS_SOFTCAP,
        )
        x_max = tl.max(tl.where(col_ok[None, :], x, float("-inf")), axis=1)
        if STORE_LOGITS:
            _store_tile(
                logits_ptr,
                offsets_ptr,
                stride_logits,
                stride_offsets,
                x,
                x_max,
                rows,
                cols,
                v0 // BLOCK_V,
                row_ok,
                col_ok,
            )
        z = x * inv_temp
        m_new = tl.maximum(m, x_max * inv_temp)
        rescale = tl.exp(m - m_new)
        # Columns past the split load zero weights: give them no mass.
        e = tl.exp(tl.where(col_ok[None, :], z - m_new[:, None], float("-inf")))
        s = s * rescale + tl.sum(e, axis=1)
        b = b * rescale + tl.sum(e * z, axis=1)
        m = m_new
        zy += tl.sum(tl.where((cols[None, :] == y[:, None]) & col_ok[None, :], z, 0.0), axis=1)
    out = parts_ptr + split * N + rows
    tl.store(out, m, mask=row_ok)
    tl.store(out + part_stride, s, mask=row_ok)
    tl.store(out + 2 * part_stride, b, mask=row_ok)
    tl.store(out + 3 * part_stride, zy, mask=row_ok)


@triton.jit
def _linear_dz_kernel(
    h_ptr,
    w_ptr,
    bias_ptr,
    y_ptr,
    lse_ptr,
    mean_ptr,
    glp_ptr,
    gent_ptr,
    dz_ptr,
    N,
    H,
    v_begin,
    v_end,
    stride_h,
    stride_w,
    stride_dz,
    inv_temp,
    softcap,
    ignore_index,
    PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
):
    cols = v_begin + tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    col_ok = cols < v_end
    y = tl.load(y_ptr + rows, mask=row_ok, other=ignore_index)
    active = row_ok & (y != ignore_index)
    lse = tl.load(lse_ptr + rows, mask=active, other=0.0)
    mean_z = tl.load(mean_ptr + rows, mask=active, other=0.0)
    g_lp = tl.load(glp_ptr + rows, mask=active, other=0.0)
    g_ent = tl.load(gent_ptr + rows, mask=active, other=0.0)
    z = _logit_tile(
        h_ptr,
        w_ptr,
        bias_ptr,
        rows,
        cols,
        row_ok,
        col_ok,
        H,
        stride_h,
        stride_w,
        inv_temp,
        softcap,
        BLOCK_N,
        BLOCK_V,
        BLOCK_H,
        PRECISION,
        HAS_BIAS,
        HAS_SOFTCAP,
    )
    keep = active[:, None] & col_ok[None, :]
    # exp(-inf) = 0 outside the chunk and on ignored rows, where z - lse means nothing and may overflow.
    p = tl.exp(tl.where(keep, z - lse[:, None], float("-inf")))
    dz = -p * (g_lp[:, None] + g_ent[:, None] * (z - mean_z[:, None]))
    dz += tl.where(cols[None, :] == y[:, None], g_lp[:, None], 0.0)
    if HAS_SOFTCAP:  # d(softcap * tanh(x / softcap)) / dx = 1 - tanh^2, tanh = z / (softcap * inv_temp)
        capped = z / (softcap * inv_temp)
        dz = dz * (1.0 - capped * capped)
    dz = tl.where(keep, dz * inv_temp, 0.0)
    tl.store(
        dz_ptr + rows.to(tl.int64)[:, None] * stride_dz + (cols - v_begin)[None, :],
        dz.to(dz_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


KERNELS = {
    "forward": _linear_forward_kernel,
    "forward-logits": _linear_forward_kernel,
    "dz": _linear_dz_kernel,
}
# Compile-time switches that tell the kernels' variants apart ("forward-logits": the forward that also
# keeps its logit tiles for a gradient made at once).
VARIANTS = {"forward": {"STORE_LOGITS": False}, "forward-logits": {"STORE_LOGITS": True}, "dz": {}}
# The dtype a kept logit tile is stored in, per input dtype: as wide as the GEMM dtype, so that dz in
# that dtype can be written over it in place; fp16 for bf16 inputs (3 more mantissa bits).
KEPT_LOGITS_DTYPE = {
    torch.bfloat16: torch.float16,
    torch.float16: torch.float16,
    torch.float32: torch.float32,
}


def precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products; half types accumulate in fp32 either way.
    return "ieee" if dtype == torch.float32 else "tf32"


def constexprs(dtype: torch.dtype, bias, softcap) -> dict:
    return {"PRECISION": precision(dtype), "HAS_BIAS": bias is not None, "HAS_SOFTCAP": softcap is not None}


def split_count(row_blocks: int, vocab: int, slots: int, resident_row_blocks: int) -> int:
    """Vocabulary splits for `row_blocks` token blocks on `slots` resident programs.

    At least enough splits that the resident programs cover no more token blocks than L2 holds
    (`resident_row_blocks`); then the first count whose last wave is WAVE_EFFICIENCY full, else the
    fullest, up to one split per SPLIT_COLUMNS columns."""
    most = max(1, triton.cdiv(vocab, SPLIT_COLUMNS))
    least = min(most, max(1, triton.cdiv(slots, max(1, resident_row_blocks))))
    candidates = range(least, min(most, max(4 * least, 2 * triton.cdiv(slots, row_blocks))) + 1)
    fill = lambda s: row_blocks * s / (triton.cdiv(row_blocks * s, slots) * slots)
    return next((s for s in candidates if fill(s) >= WAVE_EFFICIENCY), max(candidates, key=fill))


def _forward_launch(hidden, weight, bias, labels, inv_temp, softcap, config, kept=None):
    """Launch the forward with `config`; returns the partials [4, splits, N] and, when `kept` (an [N, V]
    buffer) is given, the tile offsets [N, tiles] of the logits stored there."""
    n, h = hidden.shape
    vocab = weight.shape[0]
    variant = "forward" if kept is None else "forward-logits"
    consts = constexprs(hidden.dtype, bias, softcap) | VARIANTS[variant]
    head = (hidden, weight, hidden if bias is None else bias, labels)
    offsets = torch.empty((n, triton.cdiv(vocab, config.block_v)), dtype=torch.float32, device=hidden.device)
    store = (hidden, offsets, 0, 0) if kept is None else (kept, offsets, kept.stride(0), offsets.stride(0))
    args = lambda parts: (*head, parts, parts.stride(0), *store, n, vocab, h)
    tail = (hidden.stride(0), weight.stride(0), inv_temp, softcap or 1.0)
    probe = torch.empty((4, 1, n), dtype=torch.float32, device=hidden.device)
    slots = _config.resident_programs(
        _linear_forward_kernel, (*args(probe), *tail, SPLIT_COLUMNS), config, consts, hidden.device
    )
    h_block_bytes = config.block_n * h * hidden.element_size()
    resident = _config.l2_bytes(hidden.device) // 2 // h_block_bytes
    splits = split_count(triton.cdiv(n, config.block_n), vocab, slots, resident)
    cols = triton.cdiv(triton.cdiv(vocab, splits), SPLIT_COLUMNS) * SPLIT_COLUMNS
    splits = triton.cdiv(vocab, cols)
    parts = torch.empty((4, splits, n), dtype=torch.float32, device=hidden.device)
    grid = (splits, triton.cdiv(n, config.block_n))
    _config.launch(_linear_forward_kernel, grid, (*args(parts), *tail, cols), config, consts)
    return parts, offsets


def forward_partials(hidden, weight, bias, labels, inv_temp: float, softcap: float | None):
    """Per-split (m, s, b, target logit), each [splits, N] fp32, of the scaled logits."""
    n, h = hidden.shape
    if n == 0:
        return torch.empty((4, 1, 0), dtype=torch.float32, device=hidden.device)
    trial = lambda config: _forward_launch(hidden, weight, bias, labels, inv_temp, softcap, config)
    config = _config.choose("forward", hidden.dtype, trial, key=(h, triton.next_power_of_2(n)))
    return trial(config)[0]


def forward_keeping_logits(hidden, weight, labels, inv_temp: float, kept: torch.Tensor):
    """`forward_partials` (no bias, no softcap) that also keeps the logits `x = hidden @ weight.T` in
    `kept` [N, V] (dtype `KEPT_LOGITS_DTYPE`): tile by tile as `x - x_max`, with x_max per row and tile
    of BLOCK_V columns in `offsets`. Returns (partials, offsets [N, V / BLOCK_V] fp32, BLOCK_V)."""
    n, h = hidden.shape
    trial = lambda config: _forward_launch(hidden, weight, None, labels, inv_temp, None, config, kept)
    config = _config.choose("forward-logits", hidden.dtype, trial, key=(h, triton.next_power_of_2(n)))
    parts, offsets = trial(config)
    return parts, offsets, config.block_v


def write_dz(
    dz: torch.Tensor,
    hidden,
    weight,
    bias,
    labels,
    lse,
    mean_z,
    g_logprob,
    g_entropy,
    v_begin: int,
    v_end: int,
    inv_temp: float,
    softcap: float | None,
    ignore_index: int,
) -> None:
    """Fill `dz [N, v_end - v_begin]` with the gradient of that vocabulary chunk's logits (before the
    bias and the softcap: the gradient of hidden @ W.T)."""
    n, h = hidden.shape
    if n == 0:
        return
    args = (hidden, weight, hidden if bias is None else bias, labels, lse, mean_z, g_logprob, g_entropy, dz)
    args += (n, h, v_begin, v_end, hidden.stride(0), weight.stride(0), dz.stride(0))
    args += (inv_temp, softcap or 1.0, ignore_index)
    consts = constexprs(hidden.dtype, bias, softcap)

    def trial(config):
        grid = (triton.cdiv(v_end - v_begin, config.block_v), triton.cdiv(n, config.block_n))
        _config.launch(_linear_dz_kernel, grid, args, config, consts)

    trial(_config.choose("dz", hidden.dtype, trial, key=(h, triton.next_power_of_2(n))))
