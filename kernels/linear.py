"""`linear_logprob_entropy`: log-prob and entropy over the LM head without materialising the logits.

    logprob, entropy = linear_logprob_entropy(hidden [N, H], weight [V, H], labels [N],
                                              temperature=1.0, ignore_index=-100, impl="auto")

With `z = hidden @ weight.T / temperature`: `logprob = log_softmax(z)[label]` and `entropy` of
`softmax(z)`, both `[N]` fp32 (fp64 for fp64 inputs), differentiable with respect to `hidden` and
`weight` for any upstream gradients. Rows whose label is `ignore_index` give 0 and no gradient; any
other label outside `[0, V)` raises `KernelInputError`. Inputs: fp32, bf16 or fp16 (fp64 on the torch
paths), `hidden` and `weight` of the same dtype.

The forward streams the vocabulary keeping four fp32 numbers per token (running max, sum of
exponentials, exponential-weighted logit sum, target logit) and saves `lse` and `b/s` (8 bytes per
token). The backward recomputes logits one [token wave x vocabulary chunk] block at a time, forms
`dz = (g_logp * (onehot(y) - p) - g_H * p * (z - b/s)) / T` (the `z - b/s` form stays finite when `p`
underflows) and accumulates `dh += dz @ W_chunk` in fp32 inside the GEMM and `dW_chunk = dz.T @ h`
straight into dW's rows (through an fp32 chunk when there are several token waves or fp32 dz). Peak
extra memory: the fp32 dh plus one block of `WORKSPACE_ELEMENTS` values (`backward_plan`). dz has
the input dtype, except fp32 for fp16 inputs (fp16 cannot hold `g * p` at token-mean scale).

`impl`: "auto" (Triton on CUDA tensors, else torch), "triton" (kernels in `_linear_triton.py`; on CPU
only under `TRITON_INTERPRET=1`), "torch" (the same algorithm with torch matmuls per chunk: the CPU
path) or "reference" (materialised logits, for tests).
"""

import torch

from ._common import KernelInputError, check_labels, check_temperature, resolve_impl, triton_module
from .from_logits import reference_logprob_entropy_from_logits, softmax_stats

# Values in one [rows, chunk] block of logits / dz (torch: fp32 temporaries; Triton: the dz workspace).
# CUDA: 64 MiB of bf16 dz, so that with the fp32 dh accumulator (128 MiB at N=8192, H=4096) and its
# final cast the backward stays within dW + 256 MiB.
WORKSPACE_ELEMENTS = {"cpu": 4 * 2**20, "cuda": 32 * 2**20}
CHUNK_MULTIPLE = 256
# The narrowest vocabulary chunk on CUDA. Every chunk re-reads and re-writes the fp32 dh accumulator
# of its token wave, so chunk count x tokens is the backward's extra traffic: with this floor the chunk
# count stays below V / CHUNK_FLOOR and tokens beyond WORKSPACE / CHUNK_FLOOR go in further waves, so
# the traffic grows with N, not N^2.
# (On CPU the floor is CHUNK_MULTIPLE.)
CHUNK_FLOOR = {"cuda": 4096}


def reference_linear_logprob_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    softcap: float | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch on 2-D inputs: materialises the [N, V] logits; differentiable."""
    cdt = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    logits = hidden.to(cdt) @ weight.to(cdt).T
    if bias is not None:
        logits = logits + bias.to(cdt)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return reference_logprob_entropy_from_logits(logits, labels, temperature, ignore_index)


def backward_plan(n: int, vocab: int, hidden_size: int, device: torch.device, fp32_dw: bool):
    """(token waves, vocabulary chunks) of the backward, each a list of (begin, end) ranges.

    Chunks hold about WORKSPACE / n columns (at least CHUNK_FLOOR); tokens beyond WORKSPACE / chunk go
    in further waves. `fp32_dw` (a dW chunk accumulated in fp32) also caps a chunk at WORKSPACE / H."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    budget = WORKSPACE_ELEMENTS[kind]
    cols = max(CHUNK_FLOOR.get(kind, CHUNK_MULTIPLE), budget // max(n, 1))
    if fp32_dw:
        cols = min(cols, max(CHUNK_MULTIPLE, budget // max(hidden_size, 1)))
    cols = max(CHUNK_MULTIPLE, cols // CHUNK_MULTIPLE * CHUNK_MULTIPLE)
    rows = max(1, budget // cols)
    ranges = lambda total, step: [(i, min(i + step, total)) for i in range(0, total, step)]
    return ranges(n, rows), ranges(vocab, cols)


def merge_partials(parts: torch.Tensor):
    """Combine per-split (m, s, b, z_y) [4, S, N] into (lse, b/s, z_y) [N], in a fixed order."""
    m, s, b, z_y = parts.unbind(0)
    top = m.amax(0)
    scale = torch.exp(m - top)
    s_total = (s * scale).sum(0)
    return top + torch.log(s_total), (b * scale).sum(0) / s_total, z_y.sum(0)


def _logits(h, weight, bias, softcap, v0, v1):
    """(x, t): x = cap(h @ W[v0:v1].T + bias[v0:v1]) in h's dtype; t = tanh of the softcap or None."""
    x = h @ weight[v0:v1].to(h.dtype).T
    if bias is not None:
        x += bias[v0:v1].to(h.dtype)
    if softcap is None:
        return x, None
    t = torch.tanh(x / softcap)
    return t * softcap, t


def _torch_partials(hidden, weight, bias, labels, inv_temp, softcap):
    cdt = hidden.dtype if hidden.dtype == torch.float64 else torch.float32
    h = hidden.to(cdt)
    chunks = backward_plan(hidden.shape[0], weight.shape[0], hidden.shape[1], hidden.device, False)[1]
    parts = torch.empty((4, len(chunks), hidden.shape[0]), dtype=cdt, device=hidden.device)
    for i, (v0, v1) in enumerate(chunks):
        z = _logits(h, weight, bias, softcap, v0, v1)[0]
        if inv_temp != 1.0:
            z.mul_(inv_temp)
        lse, mean_z = softmax_stats(z)
        local = labels - v0
        inside = (local >= 0) & (local < v1 - v0)
        z_y = z.gather(1, local.clamp(0, v1 - v0 - 1).unsqueeze(1)).squeeze(1)
        # A chunk's softmax is normalised: its partial is (m, s, b) = (lse, 1, b/s).
        parts[:, i] = torch.stack([lse, torch.ones_like(lse), mean_z, torch.where(inside, z_y, 0)])
    return parts


def _torch_dz(h, weight, bias, softcap, labels, lse, mean_z, g_lp, g_ent, v0, v1, inv_temp):
    """dz of one vocabulary chunk in four elementwise passes over the (capped) logits x.

    dz = p * (-g_lp - g_ent * (z - b/s)) / T with z = x / T is affine in x per row: p * (a + c * x);
    a softcap multiplies it by its derivative 1 - tanh^2."""
    x, t = _logits(h, weight, bias, softcap, v0, v1)
    p = torch.add(-lse.unsqueeze(1), x, alpha=inv_temp).exp_()
    a = ((g_ent * mean_z - g_lp) * inv_temp).unsqueeze(1)
    c = (-g_ent * inv_temp**2).unsqueeze(1)
    dz = torch.addcmul(a, c, x).mul_(p)
    local = labels - v0
    inside = (local >= 0) & (local < v1 - v0)
    target = torch.where(inside, g_lp * inv_temp, 0).unsqueeze(1)
    dz.scatter_add_(1, local.clamp(0, v1 - v0 - 1).unsqueeze(1), target)
    return dz if t is None else dz.mul_(1 - t * t)


def _triton_dz_writer(hidden, weight, labels, lse, mean_z, g_lp, g_ent, ctx, shape, dtype):
    """(r0, r1, v0, v1) -> dz of that block, written by the Triton kernel into one reused workspace."""
    kernels = triton_module("_linear_triton")
    workspace = torch.empty(shape, dtype=dtype, device=hidden.device)
    g_lp, g_ent = g_lp.contiguous(), g_ent.contiguous()

    def write(r0, r1, v0, v1):
        dz = workspace[: r1 - r0, : v1 - v0]
        hid, lab, ls, mz, glp, gent = (t[r0:r1] for t in (hidden, labels, lse, mean_z, g_lp, g_ent))
        kernels.write_dz(
            dz,
            hid,
            weight,
            ctx.bias,
            lab,
            ls,
            mz,
            glp,
            gent,
            v0,
            v1,
            ctx.inv_temp,
            ctx.softcap,
            ctx.ignore_index,
        )
        return dz

    return write


def _gemm(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool) -> None:
    """`out (+)= a @ b` with fp32 accumulation, also when `out` is fp32 and `a`, `b` are half."""
    if out.dtype == a.dtype:
        torch.addmm(out, a, b, beta=1 if accumulate else 0, out=out)
    elif out.is_cuda:  # the GEMM accumulates straight into the fp32 output: no half temporary
        torch.addmm(out, a, b, out_dtype=out.dtype, beta=1 if accumulate else 0, out=out)
    else:  # that mixed-dtype GEMM exists on CUDA only; the same products in fp32
        torch.addmm(out, a.to(out.dtype), b.to(out.dtype), beta=1 if accumulate else 0, out=out)


def _dz_source(ctx, hidden, weight, labels, lse, mean_z, g_lp, g_ent, plan):
    """(make_dz, h for the dW GEMM): make_dz(r0, r1, v0, v1) -> dz of that token x vocabulary block."""
    waves, chunks = plan
    if ctx.impl == "triton" and hidden.dtype != torch.float16:
        shape = (waves[0][1] - waves[0][0], chunks[0][1] - chunks[0][0])
        dz = _triton_dz_writer(hidden, weight, labels, lse, mean_z, g_lp, g_ent, ctx, shape, hidden.dtype)
        return dz, hidden
    h = hidden.to(lse.dtype)
    if ctx.impl == "triton":  # fp16: p * g at token-mean scale (~1e-10) underflows fp16, so dz is fp32
        shape = (waves[0][1] - waves[0][0], chunks[0][1] - chunks[0][0])
        return _triton_dz_writer(hidden, weight, labels, lse, mean_z, g_lp, g_ent, ctx, shape, h.dtype), h
    make = lambda r0, r1, v0, v1: _torch_dz(
        h[r0:r1], weight, ctx.bias, ctx.softcap, labels[r0:r1], lse[r0:r1], mean_z[r0:r1], g_lp[r0:r1],
        g_ent[r0:r1], v0, v1, ctx.inv_temp,
    )  # fmt: skip
    return make, h


class LinearLogprobEntropy(torch.autograd.Function):
    """Forward saves (hidden, weight, labels, lse, b/s, bias); backward recomputes logits chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, temperature, ignore_index, impl, softcap):
        inv_temp = 1.0 / temperature
        if impl == "triton":
            kernels = triton_module("_linear_triton")
            parts = kernels.forward_partials(hidden, weight, bias, labels, inv_temp, softcap)
        else:
            parts = _torch_partials(hidden, weight, bias, labels, inv_temp, softcap)
        lse, mean_z, z_y = merge_partials(parts)
        active = labels != ignore_index
        ctx.save_for_backward(hidden, weight, labels, lse, mean_z, bias)
        ctx.softcap, ctx.inv_temp, ctx.ignore_index, ctx.impl = softcap, inv_temp, ignore_index, impl
        return torch.where(active, z_y - lse, 0), torch.where(active, lse - mean_z, 0)

    @staticmethod
    def backward(ctx, g_logprob, g_entropy):
        hidden, weight, labels, lse, mean_z, ctx.bias = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        none = (None,) * 5
        if hidden.shape[0] == 0:
            db = None if ctx.bias is None else torch.zeros_like(ctx.bias)
            return torch.zeros_like(hidden), torch.zeros_like(weight), db, *none
        active = labels != ctx.ignore_index
        g_lp = torch.where(active, g_logprob, 0) if g_logprob is not None else torch.zeros_like(lse)
        g_ent = torch.where(active, g_entropy, 0) if g_entropy is not None else torch.zeros_like(lse)
        n, width = hidden.shape
        plan = backward_plan(n, weight.shape[0], width, hidden.device, fp32_dw=hidden.dtype == torch.float16)
        make_dz, h_gemm = _dz_source(ctx, hidden, weight, labels, lse, mean_z, g_lp, g_ent, plan)
        waves, chunks = plan
        # dW goes straight into its rows, unless it is summed in fp32 over token waves or from fp32 dz.
        dw_direct = len(waves) == 1 and weight.dtype == h_gemm.dtype
        dh = torch.empty(hidden.shape, dtype=lse.dtype, device=hidden.device) if need_h else None
        dw = torch.empty_like(weight) if need_w else None
        db = torch.zeros(weight.shape[0], dtype=lse.dtype, device=hidden.device) if need_b else None
        for chunk, (v0, v1) in enumerate(chunks):
            w_chunk = weight[v0:v1].to(h_gemm.dtype)
            acc = None
            if need_w and not dw_direct:
                acc = torch.empty((v1 - v0, width), dtype=lse.dtype, device=hidden.device)
            for wave, (r0, r1) in enumerate(waves):
                dz = make_dz(r0, r1, v0, v1)
                if need_h:
                    _gemm(dh[r0:r1], dz, w_chunk, accumulate=chunk > 0)
                if need_w:
                    _gemm(dw[v0:v1] if dw_direct else acc, dz.T, h_gemm[r0:r1], accumulate=wave > 0)
                if need_b:
                    db[v0:v1] += dz.sum(0, dtype=db.dtype)
            if acc is not None:
                dw[v0:v1] = acc
        del make_dz  # frees the dz workspace before dh is cast
        dh = dh.to(hidden.dtype) if need_h else None
        return dh, dw, (db.to(ctx.bias.dtype) if need_b else None), *none


def check_inputs(hidden, weight, labels, bias=None, softcap=None, shift=False) -> None:
    """Shapes, dtypes and options of `linear_logprob_entropy` (KernelInputError on a mismatch)."""
    if hidden.dim() < (2 if shift else 1) or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise KernelInputError(
            f"need hidden [..., H]{' with a sequence axis for shift=True' if shift else ''} and weight"
            f" [V, H], got {list(hidden.shape)} and {list(weight.shape)}"
        )
    if hidden.dtype != weight.dtype or not hidden.dtype.is_floating_point:
        raise KernelInputError(
            f"hidden and weight need one floating dtype, got {hidden.dtype} and {weight.dtype}"
        )
    if labels.shape != hidden.shape[:-1]:
        raise KernelInputError(f"labels must have shape {list(hidden.shape[:-1])}, got {list(labels.shape)}")
    if bias is not None and (bias.shape != weight.shape[:1] or not bias.dtype.is_floating_point):
        raise KernelInputError(f"bias must be a floating [V] = [{weight.shape[0]}] tensor, got {bias.shape}")
    if softcap is not None and not softcap > 0:
        raise KernelInputError(f"softcap must be > 0 or None, got {softcap}")


def linear_logprob_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    impl: str = "auto",
    *,
    shift: bool = False,
    softcap: float | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label and entropy of softmax(cap(hidden @ weight.T + bias) / temperature),
    without materialising the logits; differentiable in hidden, weight and bias.

    Args:
        hidden: `[..., H]` hidden states: fp32, bf16 or fp16 (fp64 on the torch paths).
        weight: `[V, H]` LM head, same dtype as `hidden`.
        labels: `[...]` integer token ids (the leading shape of `hidden`) in `[0, V)`, or `ignore_index`.
        temperature: > 0; the (capped) logits are divided by it.
        ignore_index: label value whose tokens give 0 and receive no gradient.
        impl: "auto" (Triton on CUDA, chunked torch on CPU), "triton" (on CPU only under
            `TRITON_INTERPRET=1`), "torch" (chunked, bounded memory) or "reference" (materialised).
        shift: next-token labels: `labels` holds the sequence's own ids and position `t` is scored on
            `labels[..., t + 1]`; the outputs then have shape `[..., T - 1]` (the last position of the
            sequence axis, `hidden`'s second-to-last, has no next token).
        softcap: `c > 0` caps the logits as `c * tanh(logits / c)` before the temperature.
        bias: `[V]` bias of the LM head, added to the logits.

    Returns:
        `(logprob, entropy)`, fp32 (fp64 for fp64 inputs), shaped like `labels` (after the shift).

    Raises:
        KernelInputError (a ValueError): bad shapes, dtypes, labels or options.
    """
    check_inputs(hidden, weight, labels, bias, softcap, shift)
    if shift:
        hidden, labels = hidden[..., :-1, :], labels[..., 1:]
    lead = labels.shape
    hidden, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    hidden, weight, labels, bias, impl = prepare_inputs(
        hidden, weight, labels, temperature, ignore_index, impl, bias
    )
    if impl == "reference":
        out = reference_linear_logprob_entropy(
            hidden, weight, labels, temperature, ignore_index, softcap, bias
        )
    else:
        out = LinearLogprobEntropy.apply(
            hidden, weight, bias, labels, temperature, ignore_index, impl, softcap
        )
    return out[0].view(lead), out[1].view(lead)


def prepare_inputs(hidden, weight, labels, temperature, ignore_index, impl, bias=None):
    """Checked inputs for the kernels: (hidden [N, H], weight, labels [N] int64, bias, resolved impl),
    contiguous for Triton. Shapes and dtypes must already be consistent (`_check`)."""
    check_temperature(temperature)
    check_labels(labels, hidden.shape[0], weight.shape[0], ignore_index)
    labels = labels.long()  # gather / scatter want int64 indices
    impl = resolve_impl(impl, hidden, weight)
    if impl == "triton":
        hidden, weight, labels = hidden.contiguous(), weight.contiguous(), labels.contiguous()
        bias = None if bias is None else bias.contiguous()
    return hidden, weight, labels, bias, impl
