"""`logprob_entropy_from_logits`: log-prob of the label and full-vocabulary entropy from existing logits.

    logprob, entropy = logprob_entropy_from_logits(logits [N, V], labels [N], temperature=1.0,
                                                   ignore_index=-100, impl="auto")

With `z = logits / temperature`: `logprob = log_softmax(z)[label]`, `entropy = -sum softmax(z) *
log_softmax(z)`; both `[N]` fp32 (fp64 for fp64 logits), differentiable with respect to `logits`.
Rows whose label is `ignore_index` give 0 and no gradient; any other label outside `[0, V)` raises
`KernelInputError`. Logits of -inf (masked vocabulary) are allowed.

`impl`: "auto" (Triton on CUDA, chunked torch on CPU), "triton", "torch" (rows processed in chunks of
`ROW_CHUNK_ELEMENTS` logits, so fp32 temporaries stay bounded for half-precision inputs), or
"reference" (plain `log_softmax`, for tests). The sampler calls this every decode step on CPU.
"""

import torch

from ._common import KernelInputError, check_labels, check_temperature, resolve_impl, triton_module

# Logits per row chunk on the torch path (16 MiB per fp32 temporary).
ROW_CHUNK_ELEMENTS = 4 * 2**20


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def reference_logprob_entropy_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch: materialises log_softmax of the whole [N, V] block; differentiable."""
    z = logits.to(_compute_dtype(logits.dtype)) / temperature
    logp_all = torch.log_softmax(z, dim=-1)
    p = logp_all.exp()
    # -inf logits have p == 0; zeroing them first keeps 0 * -inf out of both value and gradient.
    entropy = -(p * logp_all.masked_fill(p == 0, 0)).sum(-1)
    active = labels != ignore_index
    logp = logp_all.gather(-1, labels.clamp(0, logits.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
    return torch.where(active, logp, 0), torch.where(active, entropy, 0)


def softmax_stats(z: torch.Tensor):
    """(lse, b/s) of scaled logits z [n, V]: log-sum-exp and the softmax-weighted mean logit.

    Built on `torch.softmax` (the fastest CPU pass); lse comes from the arg-max column, where
    p >= 1/V keeps its log accurate."""
    p = torch.softmax(z, dim=-1)
    lse = z.amax(dim=-1) - torch.log(p.amax(dim=-1))  # the largest p sits at the largest logit
    mean_z = torch.linalg.vecdot(p, z)
    if mean_z.isnan().any():  # rows with -inf logits: 0 * -inf
        mean_z = torch.linalg.vecdot(p, z.masked_fill(torch.isneginf(z), 0))
    return lse, mean_z


def _scaled(logits: torch.Tensor, dtype: torch.dtype, inv_temp: float) -> torch.Tensor:
    z = logits.to(dtype)
    return z if inv_temp == 1.0 else z * inv_temp


def _torch_backward_rows(z, y_local, lse, mean_z, g_lp, g_ent, inv_temp):
    """d logits of one row chunk from its scaled logits z [n, V] (left unchanged), in six passes:
    `-p * (g_lp + g_ent * (z - b/s)) / T` with `p = exp(z - lse)`, plus `g_lp / T` at the label."""
    p = torch.sub(z, lse.unsqueeze(-1)).exp_()
    dz = torch.sub(z, mean_z.unsqueeze(-1)).mul_((-g_ent * inv_temp).unsqueeze(-1))
    dz.sub_((g_lp * inv_temp).unsqueeze(-1)).mul_(p)
    if torch.isneginf(z).any():  # a masked vocabulary: p == 0 times an infinite centred logit
        dz.masked_fill_(p == 0, 0)
    dz.scatter_add_(1, y_local.unsqueeze(-1), (g_lp * inv_temp).unsqueeze(-1))
    return dz


def _row_chunks(n: int, vocab: int):
    rows = max(1, ROW_CHUNK_ELEMENTS // max(vocab, 1))
    return [(r, min(r + rows, n)) for r in range(0, max(n, 1), rows)]  # n == 0: one empty chunk


def row_stats(logits, labels, inv_temp, ignore_index, impl):
    """(logp, entropy, lse, b/s), each [N], of `logits` [N, V] (impl "triton" or "torch")."""
    if impl == "triton":
        return triton_module("_from_logits_triton").forward(logits, labels, inv_temp, ignore_index)
    cdt = _compute_dtype(logits.dtype)
    stats = [softmax_stats(_scaled(logits[r0:r1], cdt, inv_temp)) for r0, r1 in _row_chunks(*logits.shape)]
    lse, mean_z = (torch.cat(parts) for parts in zip(*stats))
    z_y = logits.gather(1, labels.clamp(0, logits.shape[1] - 1).unsqueeze(-1)).squeeze(-1).to(cdt) * inv_temp
    active = labels != ignore_index
    return torch.where(active, z_y - lse, 0), torch.where(active, lse - mean_z, 0), lse, mean_z


class LogprobEntropyFromLogits(torch.autograd.Function):
    """Streaming forward saving `lse` and `b/s` per row; backward recomputes `p` from the logits."""

    @staticmethod
    def forward(ctx, logits, labels, temperature, ignore_index, impl):
        inv_temp = 1.0 / temperature
        logp, entropy, lse, mean_z = row_stats(logits, labels, inv_temp, ignore_index, impl)
        ctx.save_for_backward(logits, labels, lse, mean_z)
        ctx.inv_temp, ctx.ignore_index, ctx.impl = inv_temp, ignore_index, impl
        return logp, entropy

    @staticmethod
    def backward(ctx, g_logprob, g_entropy):
        logits, labels, lse, mean_z = ctx.saved_tensors
        g_lp = torch.zeros_like(lse) if g_logprob is None else g_logprob.to(lse.dtype)
        g_ent = torch.zeros_like(lse) if g_entropy is None else g_entropy.to(lse.dtype)
        dlogits = logits_gradient(
            logits, labels, lse, mean_z, g_lp, g_ent, ctx.inv_temp, ctx.ignore_index, ctx.impl
        )
        return dlogits, None, None, None, None


def logits_gradient(logits, labels, lse, mean_z, g_lp, g_ent, inv_temp, ignore_index, impl, out=None):
    """d(g_lp . logp + g_ent . entropy) / d logits [N, V] for `row_stats`'s lse and b/s, into `out`
    (a new tensor like `logits` when None; `out=logits` overwrites the logits in place)."""
    out = torch.empty_like(logits) if out is None else out
    if impl == "triton":
        kernels = triton_module("_from_logits_triton")
        kernels.backward(
            logits, labels, lse, mean_z, g_lp.contiguous(), g_ent.contiguous(), inv_temp, ignore_index, out
        )
        return out
    active = labels != ignore_index
    g_lp, g_ent = torch.where(active, g_lp, 0), torch.where(active, g_ent, 0)
    y = labels.clamp(0, logits.shape[1] - 1)
    for r0, r1 in _row_chunks(*logits.shape):
        z = _scaled(logits[r0:r1], lse.dtype, inv_temp)
        per_row = (t[r0:r1] for t in (y, lse, mean_z, g_lp, g_ent))
        out[r0:r1] = _torch_backward_rows(z, *per_row, inv_temp)
    return out


def logprob_entropy_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row log-prob of each label and entropy of softmax(logits / temperature).

    Args:
        logits: `[N, V]` floating logits; -inf entries (a masked vocabulary) are allowed.
        labels: `[N]` integer ids in `[0, V)` or `ignore_index` (those rows give 0, no gradient).
        temperature: > 0.
        impl: "auto" (Triton on CUDA, chunked torch on CPU), "triton", "torch" or "reference".

    Returns:
        `(logprob, entropy)`, each `[N]` fp32 (fp64 for fp64 logits), differentiable in `logits`.

    Raises:
        KernelInputError (a ValueError): bad shapes, dtypes, labels or options.
    """
    if logits.dim() != 2:
        raise KernelInputError(f"logits must have shape [N, V], got {list(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise KernelInputError(f"logits must be floating point, got {logits.dtype}")
    check_temperature(temperature)
    check_labels(labels, logits.shape[0], logits.shape[1], ignore_index)
    labels = labels.long()  # gather / scatter want int64 indices
    impl = resolve_impl(impl, logits)
    if impl == "reference":
        return reference_logprob_entropy_from_logits(logits, labels, temperature, ignore_index)
    if impl == "triton":
        logits, labels = logits.contiguous(), labels.contiguous()
    if not (torch.is_grad_enabled() and logits.requires_grad):  # the sampler: skip autograd bookkeeping
        return row_stats(logits, labels, 1.0 / temperature, ignore_index, impl)[:2]
    return LogprobEntropyFromLogits.apply(logits, labels, temperature, ignore_index, impl)
