"""`linear_loss`: a per-token loss over the LM head's log-prob and entropy, its gradient made in the forward.

    loss, logprob, entropy = linear_loss(hidden [N, H], weight [V, H], labels [N], row_loss,
                                         temperature, ignore_index, impl)

`row_loss(logprob, entropy, r0, r1)` is the 0-dim sum of a per-token loss over the rows `r0:r1`, a torch
function of those rows' log-prob and entropy (and of fixed per-token data it slices itself). `loss` is
the sum over all rows, differentiable in `hidden` and `weight`; `logprob` and `entropy` ([N], fp32, fp64
for fp64 inputs) are detached values, as in `linear_logprob_entropy`. Inputs come from
`linear.prepare_inputs` with impl "triton" or "torch".

Because the upstream gradients `dL/dlogprob` and `dL/dentropy` of such a loss are known as soon as the
row's own statistics are, the forward finishes the backward's work in three N x H x V GEMMs instead of
the four of the two-pass path (whose backward recomputes the logits). Per block of R token rows:

  1. (Triton) one pass of the fused forward kernel (`_linear_triton.forward_keeping_logits`): the
     row statistics (max, sum of exponentials, logit-weighted sum, target logit) come from the GEMM's
     fp32 accumulators, so log-prob and entropy are as exact as the two-pass path's; each logit tile
     is also kept in the workspace as `x - x_max` (x_max per row and tile, fp32, beside it) in fp16
     for bf16 inputs. A logit near its tile's max, where the softmax mass is, then keeps ~2^-11 of its
     distance to that max, not 2^-11 of its own size (plain fp16 logits of |z| ~ 30 would put ~1 %
     errors into p).
     (torch) the block's logits in fp32 (fp64 for fp64) by one matmul, then `from_logits.row_stats`.
  2. g_logp, g_H = autograd of `row_loss` on the block's [R] vectors: the loss's own formula, no hand copy
  3. dz over the workspace in place (Triton: bf16 over the fp16 kept logits, the same bytes)
  4. dh[rows] = dz @ W, and dW (+)= dz.T @ h[rows] accumulated in place

The backward only scales the kept dh and dW by the incoming scalar gradient, in place (one backward per
forward). Rows per block: `WORKSPACE_BYTES` over `row_bytes` (2 bytes per logit plus the tile offsets
on Triton in bf16), a multiple of `ROW_MULTIPLE`: 640 on CUDA at V = 152064, so 13 blocks at N = 8192.

Extra memory: dW and dh (held from forward to backward) plus the workspace: at N = 8192, H = 4096,
V = 152064 bf16, dW + 64 MiB + 186 MiB + 6 MiB of tile maxima. dW is accumulated across blocks in the
weight's dtype: an fp32 accumulator would add twice dW's size (2.3 GiB there). The price is one bf16
rounding of the running sum per block. The torch path computes in fp32 (fp64 for fp64 inputs) and casts
dW once. fp16 inputs run on Triton but `linear_tree_loss` does not send them here: an fp16 dz at
token-mean scale underflows (the two-pass path then uses an fp32 dz).
"""

import torch

from ._common import triton_module
from .from_logits import logits_gradient, row_stats
from .linear import _gemm, merge_partials

# Logits per block. CUDA: with dh (64 MiB at N = 8192, H = 4096 bf16) extra memory stays <= dW + 256 MiB.
# CPU: blocks of 16 MiB (85 rows at V = 49152) made the path slower than the two-pass one on 2 cores
# (skinny GEMMs, dW re-read per block); 64 MiB matched or beat it in the same alternating run.
WORKSPACE_BYTES = {"cpu": 64 * 2**20, "cuda": 192 * 2**20}
ROW_MULTIPLE = 64
# Triton keeps one fp32 offset per row and tile of logits; tiles are 64 columns or wider in every config.
NARROWEST_TILE = 64


def block_rows(n: int, row_bytes: int, device: torch.device) -> int:
    """Token rows per block: the workspace over one row's bytes, a multiple of ROW_MULTIPLE if >= it."""
    rows = max(1, WORKSPACE_BYTES["cuda" if device.type == "cuda" else "cpu"] // row_bytes)
    if rows >= ROW_MULTIPLE:
        rows -= rows % ROW_MULTIPLE
    return max(1, min(rows, n))


def _triton_block(h_rows, weight, labels, kept, inv_temp, ignore_index):
    """(logp, entropy, make_dz) of one block: statistics from the GEMM's fp32 accumulators while the
    logits are kept tile-relative in `kept`; make_dz(g_logp, g_H) writes dz over them in place."""
    parts, offsets, tile_cols = triton_module("_linear_triton").forward_keeping_logits(
        h_rows, weight, labels, inv_temp, kept
    )
    lse, mean_z, z_y = merge_partials(parts)
    active = labels != ignore_index
    logp, entropy = torch.where(active, z_y - lse, 0), torch.where(active, lse - mean_z, 0)

    def make_dz(g_logp, g_ent):
        dz = kept.view(h_rows.dtype)
        triton_module("_from_logits_triton").backward(
            kept, labels, lse, mean_z, g_logp.contiguous(), g_ent.contiguous(), inv_temp, ignore_index, dz,
            (offsets, tile_cols),
        )  # fmt: skip
        return dz

    return logp, entropy, make_dz


def _torch_block(h_rows, weight, labels, logits, inv_temp, ignore_index):
    """(logp, entropy, make_dz) of one block from its logits computed into `logits` (the inputs' fp32 or
    fp64); make_dz(g_logp, g_H) writes dz over them in place."""
    _gemm(logits, h_rows, weight.T, accumulate=False)
    logp, entropy, lse, mean_z = row_stats(logits, labels, inv_temp, ignore_index, "torch")

    def make_dz(g_logp, g_ent):
        return logits_gradient(
            logits, labels, lse, mean_z, g_logp, g_ent, inv_temp, ignore_index, "torch", logits
        )

    return logp, entropy, make_dz


def _row_loss_grads(row_loss, logprob, entropy, r0, r1):
    """(loss, g_logp, g_H) of `row_loss` over rows r0:r1, by autograd on detached copies."""
    with torch.enable_grad():
        logp = logprob.detach().requires_grad_()
        ent = entropy.detach().requires_grad_()
        loss = row_loss(logp, ent, r0, r1)
        g_logp, g_ent = torch.autograd.grad(loss, (logp, ent), allow_unused=True, materialize_grads=True)
    return loss.detach(), g_logp, g_ent


def row_bytes(vocab: int, dtype: torch.dtype, impl: str) -> int:
    """Workspace bytes per token row for GEMM operands of `dtype`: the Triton path's kept logits and tile
    offsets, or the torch path's logits in `dtype` (the inputs' fp32 or fp64)."""
    if impl != "triton":
        return vocab * dtype.itemsize
    kept = triton_module("_linear_triton").KEPT_LOGITS_DTYPE[dtype]
    return vocab * kept.itemsize + 4 * -(-vocab // NARROWEST_TILE)


def _workspace(h: torch.Tensor, vocab: int, impl: str):
    """(the blocks' logit buffer [rows, V], the block function) for the GEMM operand `h` [N, H]."""
    rows = block_rows(h.shape[0], row_bytes(vocab, h.dtype, impl), h.device)
    if impl == "triton":
        kept = triton_module("_linear_triton").KEPT_LOGITS_DTYPE[h.dtype]
        return torch.empty((rows, vocab), dtype=kept, device=h.device), _triton_block
    return torch.empty((rows, vocab), dtype=h.dtype, device=h.device), _torch_block


class LinearLoss(torch.autograd.Function):
    """Forward: loss, log-prob and entropy, with dh and dW; backward: those scaled by the loss's gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, row_loss, temperature, ignore_index, impl):
        stats_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        h, w = (t.to(hidden.dtype if impl == "triton" else stats_dtype) for t in (hidden, weight))
        n = hidden.shape[0]
        workspace, block = _workspace(h, weight.shape[0], impl)
        need_h, need_w = ctx.needs_input_grad[:2]
        dh = torch.empty_like(h) if need_h else None
        dw = torch.empty_like(w) if need_w else None
        logprob, entropy = (torch.empty(n, dtype=stats_dtype, device=hidden.device) for _ in range(2))
        loss = torch.zeros((), dtype=stats_dtype, device=hidden.device)
        for r0 in range(0, n, workspace.shape[0]):
            r1 = min(r0 + workspace.shape[0], n)
            rows = (h[r0:r1], w, labels[r0:r1], workspace[: r1 - r0])
            logp, ent, make_dz = block(*rows, 1 / temperature, ignore_index)
            logprob[r0:r1], entropy[r0:r1] = logp, ent
            block_loss, g_logp, g_ent = _row_loss_grads(row_loss, logp, ent, r0, r1)
            loss += block_loss
            dz = make_dz(g_logp, g_ent)
            if need_h:
                torch.mm(dz, w, out=dh[r0:r1])
            if need_w:
                _gemm(dw, dz.T, h[r0:r1], accumulate=r0 > 0)
        if need_w and n == 0:
            dw.zero_()
        del workspace
        ctx.grads = (None if dh is None else dh.to(hidden.dtype), None if dw is None else dw.to(weight.dtype))
        ctx.mark_non_differentiable(logprob, entropy)
        return loss, logprob, entropy

    @staticmethod
    def backward(ctx, grad_loss, _grad_logprob, _grad_entropy):
        if ctx.grads is None:
            raise RuntimeError("arpo.kernels.linear_loss: one backward per forward (it scales in place)")
        dh, dw = ctx.grads
        ctx.grads = None
        scale = lambda t: None if t is None else t.mul_(grad_loss.to(t.dtype))
        return scale(dh), scale(dw), None, None, None, None, None


def linear_loss(hidden, weight, labels, row_loss, temperature, ignore_index, impl):
    """(loss, logprob, entropy); see the module docstring."""
    return LinearLoss.apply(hidden, weight, labels, row_loss, temperature, ignore_index, impl)
