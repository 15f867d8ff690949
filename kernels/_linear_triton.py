"""Triton kernels of `linear_logprob_entropy` (imported lazily: importing this module imports triton).

Forward: each program owns a block of tokens and one contiguous split of the vocabulary. It streams
vocabulary tiles of `z = (h @ W.T) / T` (fp32 accumulation) and keeps, per token, the running max
`m`, `s = sum e^(z-m)`, `b = sum e^(z-m) z` and the target logit. The per-split partials are merged
in a fixed order on the host side, so results are deterministic (no atomics).

Backward (`dz` kernel): recompute the logit tiles of one vocabulary chunk and write
`dz = (g_logp * (onehot(y) - p) - g_H * p * (z - b/s)) / T` into a bounded workspace; cuBLAS then does
`dh += dz @ W_chunk` and `dW_chunk = dz.T @ h`. Neither kernel accumulates into its output, so the
autotuner needs no `reset_to_zero`/`restore_value`.
"""

import torch
import triton
import triton.language as tl

from ._common import interpreting

# Vocabulary splits are multiples of this many columns, itself a multiple of every BLOCK_V below.
SPLIT_COLUMNS = 256
# The interpreter runs one fixed, large-tile config: its cost grows with the number of programs.
_INTERPRETER_CONFIG = {"BLOCK_N": 64, "BLOCK_V": 128, "BLOCK_H": 64}
_INTERPRETER_SMS = 2


def _configs():
    return [
        triton.Config({"BLOCK_N": bn, "BLOCK_V": bv, "BLOCK_H": bh}, num_warps=w, num_stages=st)
        for bn, bv, bh, w, st in [
            (128, 128, 64, 8, 3),
            (128, 256, 64, 8, 3),
            (64, 256, 64, 8, 4),
            (128, 128, 32, 4, 4),
            (64, 128, 64, 4, 4),
        ]
    ]


@triton.jit
def _logit_tile(
    h_ptr,
    w_ptr,
    rows,
    cols,
    row_ok,
    col_ok,
    H,
    stride_h,
    stride_w,
    inv_temp,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """fp32 tile z[rows, cols] = (h[rows] @ W[cols].T) * inv_temp."""
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
    return acc * inv_temp


@triton.jit
def _linear_forward_kernel(
    h_ptr,
    w_ptr,
    y_ptr,
    m_ptr,
    s_ptr,
    b_ptr,
    zy_ptr,
    N,
    V,
    H,
    stride_h,
    stride_w,
    inv_temp,
    cols_per_split,
    n_bucket,
    PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
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
        z = _logit_tile(
            h_ptr,
            w_ptr,
            rows,
            cols,
            row_ok,
            col_ok,
            H,
            stride_h,
            stride_w,
            inv_temp,
            BLOCK_N,
            BLOCK_V,
            BLOCK_H,
            PRECISION,
        )
        m_new = tl.maximum(m, tl.max(tl.where(col_ok[None, :], z, float("-inf")), axis=1))
        rescale = tl.exp(m - m_new)
        # Columns past the split load zero weights: give them no mass.
        e = tl.exp(tl.where(col_ok[None, :], z - m_new[:, None], float("-inf")))
        s = s * rescale + tl.sum(e, axis=1)
        b = b * rescale + tl.sum(e * z, axis=1)
        m = m_new
        zy += tl.sum(tl.where((cols[None, :] == y[:, None]) & col_ok[None, :], z, 0.0), axis=1)
    out = split * N + rows
    tl.store(m_ptr + out, m, mask=row_ok)
    tl.store(s_ptr + out, s, mask=row_ok)
    tl.store(b_ptr + out, b, mask=row_ok)
    tl.store(zy_ptr + out, zy, mask=row_ok)


@triton.jit
def _linear_dz_kernel(
    h_ptr,
    w_ptr,
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
    ignore_index,
    n_bucket,
    PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = v_begin + tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
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
        rows,
        cols,
        row_ok,
        col_ok,
        H,
        stride_h,
        stride_w,
        inv_temp,
        BLOCK_N,
        BLOCK_V,
        BLOCK_H,
        PRECISION,
    )
    keep = active[:, None] & col_ok[None, :]
    # exp(-inf) = 0 outside the chunk and on ignored rows, where z - lse means nothing and may overflow.
    p = tl.exp(tl.where(keep, z - lse[:, None], float("-inf")))
    dz = -p * (g_lp[:, None] + g_ent[:, None] * (z - mean_z[:, None]))
    dz += tl.where(cols[None, :] == y[:, None], g_lp[:, None], 0.0)
    dz = tl.where(keep, dz * inv_temp, 0.0)
    tl.store(
        dz_ptr + rows[:, None] * stride_dz + (cols - v_begin)[None, :],
        dz.to(dz_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


_forward_tuned = triton.autotune(_configs(), key=["n_bucket", "H", "V"])(_linear_forward_kernel)
_dz_tuned = triton.autotune(_configs(), key=["n_bucket", "H"])(_linear_dz_kernel)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products; half types accumulate in fp32 either way.
    return "ieee" if dtype == torch.float32 else "tf32"


def _n_bucket(n: int) -> int:
    return triton.next_power_of_2(max(n, 1))


def _launch(kernel_tuned, kernel_plain, grid_of_meta, *args):
    if interpreting():
        kernel_plain[grid_of_meta(_INTERPRETER_CONFIG)](*args, **_INTERPRETER_CONFIG)
    else:
        kernel_tuned[grid_of_meta](*args)


def _vocab_splits(n: int, vocab: int, device: torch.device) -> tuple[int, int]:
    """(number of splits, columns per split) giving about two programs per SM."""
    sms = (
        _INTERPRETER_SMS if interpreting() else torch.cuda.get_device_properties(device).multi_processor_count
    )
    row_blocks = max(1, triton.cdiv(n, 128))
    wanted = max(1, min(triton.cdiv(2 * sms, row_blocks), triton.cdiv(vocab, SPLIT_COLUMNS)))
    cols = triton.cdiv(triton.cdiv(vocab, wanted), SPLIT_COLUMNS) * SPLIT_COLUMNS
    return triton.cdiv(vocab, cols), cols


def forward_partials(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, inv_temp: float):
    """Per-split (m, s, b, target logit), each [splits, N] fp32, of the scaled logits."""
    n, h = hidden.shape
    vocab = weight.shape[0]
    splits, cols = _vocab_splits(n, vocab, hidden.device)
    parts = torch.empty((4, splits, n), dtype=torch.float32, device=hidden.device)
    if n == 0:
        return parts
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), splits)
    _launch(
        _forward_tuned,
        _linear_forward_kernel,
        grid,
        hidden,
        weight,
        labels,
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        n,
        vocab,
        h,
        hidden.stride(0),
        weight.stride(0),
        inv_temp,
        cols,
        _n_bucket(n),
        _precision(hidden.dtype),
    )
    return parts


def write_dz(
    dz: torch.Tensor,
    hidden,
    weight,
    labels,
    lse,
    mean_z,
    g_logprob,
    g_entropy,
    v_begin: int,
    v_end: int,
    inv_temp: float,
    ignore_index: int,
) -> None:
    """Fill `dz [N, v_end - v_begin]` with the logit gradient of that vocabulary chunk."""
    n, h = hidden.shape
    if n == 0:
        return
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(v_end - v_begin, meta["BLOCK_V"]))
    _launch(
        _dz_tuned,
        _linear_dz_kernel,
        grid,
        hidden,
        weight,
        labels,
        lse,
        mean_z,
        g_logprob,
        g_entropy,
        dz,
        n,
        h,
        v_begin,
        v_end,
        hidden.stride(0),
        weight.stride(0),
        dz.stride(0),
        inv_temp,
        ignore_index,
        _n_bucket(n),
        _precision(hidden.dtype),
    )
