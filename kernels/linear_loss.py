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

  1. logits [R, V] = h @ W.T in fp32 into one reused workspace (cuBLAS accumulates in fp32 and writes
     fp32: logits rounded to bf16 would be off by |z| * 2^-9, about 0.02 at |z| = 10)
  2. lse, b/s, log-prob and entropy of each row (`from_logits.row_stats`: one Triton program per row)
  3. g_logp, g_H = autograd of `row_loss` on those [R] vectors: the loss's own formula, no hand copy
  4. dz over the workspace in place (`from_logits.logits_gradient`); for bf16 inputs dz is bf16 and
     goes into the first half of each fp32 row (a view with row stride 2V), one program per row
  5. dh[rows] = dz @ W, and dW (+)= dz.T @ h[rows] accumulated in place

The backward only scales the kept dh and dW by the incoming scalar gradient, in place (one backward per
forward). Rows per block: `WORKSPACE_BYTES // (V * 4)` (fp32 logits), a multiple of `ROW_MULTIPLE`:
320 on CUDA at V = 152064, so 26 blocks at N = 8192.

Extra memory: dW and dh (held from forward to backward) plus the workspace: at N = 8192, H = 4096,
V = 152064 bf16, dW + 64 MiB + 186 MiB. dW is accumulated across blocks in the weight's dtype: an fp32
accumulator would add twice dW's size (2.3 GiB there). The price is one bf16 rounding of the running sum
per block; in tests/test_kernels_linear_loss.py 24 blocks raise the worst vocabulary row's relative
error from 8.2e-3 (one block: bf16 dz, one rounding) to 1.24e-2. The torch path computes in fp32 (fp64
for fp64 inputs) and casts dW once. fp16 is not served here (the caller keeps the two-pass path): an
fp16 dz at token-mean scale underflows (the two-pass path then uses an fp32 dz), and fp32 GEMM
operands would need an fp32 copy of W.
"""

import torch

from .from_logits import logits_gradient, row_stats
from .linear import _gemm

# fp32 logits per block. CUDA: with dh (64 MiB at N = 8192, H = 4096 bf16) extra memory stays <= dW + 256 MiB.
# CPU: blocks of 16 MiB (85 rows at V = 49152) made the path slower than the two-pass one on 2 cores
# (skinny GEMMs, dW re-read per block); 64 MiB matched or beat it in the same alternating run.
WORKSPACE_BYTES = {"cpu": 64 * 2**20, "cuda": 192 * 2**20}
ROW_MULTIPLE = 64


def block_rows(n: int, vocab: int, element_bytes: int, device: torch.device) -> int:
    """Token rows per block: the workspace over one row of logits, a multiple of ROW_MULTIPLE if >= it."""
    rows = max(1, WORKSPACE_BYTES["cuda" if device.type == "cuda" else "cpu"] // (vocab * element_bytes))
    if rows >= ROW_MULTIPLE:
        rows -= rows % ROW_MULTIPLE
    return max(1, min(rows, n))


def _row_loss_grads(row_loss, logprob, entropy, r0, r1):
    """(loss, g_logp, g_H) of `row_loss` over rows r0:r1, by autograd on detached copies."""
    with torch.enable_grad():
        logp = logprob.detach().requires_grad_()
        ent = entropy.detach().requires_grad_()
        loss = row_loss(logp, ent, r0, r1)
        g_logp, g_ent = torch.autograd.grad(loss, (logp, ent), allow_unused=True, materialize_grads=True)
    return loss.detach(), g_logp, g_ent


class LinearLoss(torch.autograd.Function):
    """Forward: loss, log-prob and entropy, with dh and dW; backward: those scaled by the loss's gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, row_loss, temperature, ignore_index, impl):
        stats_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        h, w = (t.to(hidden.dtype if impl == "triton" else stats_dtype) for t in (hidden, weight))
        n, vocab = hidden.shape[0], weight.shape[0]
        rows = block_rows(n, vocab, stats_dtype.itemsize, hidden.device)
        workspace = torch.empty((rows, vocab), dtype=stats_dtype, device=hidden.device)
        # dz in the GEMM dtype; a half dz goes into the first half of each fp32 logit row.
        dz_rows = workspace.view(h.dtype)[:, :vocab]
        need_h, need_w = ctx.needs_input_grad[:2]
        dh = torch.empty_like(h) if need_h else None
        dw = torch.empty_like(w) if need_w else None
        logprob, entropy = (torch.empty(n, dtype=stats_dtype, device=hidden.device) for _ in range(2))
        loss = torch.zeros((), dtype=stats_dtype, device=hidden.device)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            logits = workspace[: r1 - r0]
            _gemm(logits, h[r0:r1], w.T, accumulate=False)
            logp, ent, lse, mean_z = row_stats(logits, labels[r0:r1], 1.0 / temperature, ignore_index, impl)
            logprob[r0:r1], entropy[r0:r1] = logp, ent
            block_loss, g_logp, g_ent = _row_loss_grads(row_loss, logp, ent, r0, r1)
            loss += block_loss
            dz = dz_rows[: r1 - r0]
            logits_gradient(
                logits, labels[r0:r1], lse, mean_z, g_logp, g_ent, 1 / temperature, ignore_index, impl, dz
            )
            if not dz.is_cuda and dz.stride(0) != vocab:
                # CPU half GEMMs with a row stride beyond K let a NaN past each row (here: the rest of the
                # fp32 logit row) into the product; cuBLAS reads K columns. Only the interpreter gets here.
                dz = dz.contiguous()
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
