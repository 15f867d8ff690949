"""`linear_tree_loss`: the ARPO tree-packed PPO loss from hidden states, without materialising logits.

    loss, aux = linear_tree_loss(hidden [N, H], weight [V, H], labels [N], old_logprob [N],
                                 s_plus [N], s_minus [N], w [N], ref_logprob [N] | None = None, *,
                                 eps_low=0.2, eps_high=0.2, dual_clip_c=3.0, kl_coef=0.0, entropy_coef=0.0,
                                 temperature=1.0, ignore_index=-100, impl="auto")

Per unique token u (docs/design.md, "The loss over the tree"), with
`r = exp(clamp(logp - old_logprob, +-LOG_RATIO_LIMIT))`:

    L(u) = -min(r, 1 + eps_high) * s_plus(u) - min(max(r, 1 - eps_low), dual_clip_c) * s_minus(u)
           + kl_coef * w(u) * k3(u) - entropy_coef * w(u) * H(u)
    k3 = min(exp(d) - d - 1, KL_VALUE_LIMIT),  d = clamp(ref - logp, +-LOG_RATIO_LIMIT)  (with ref_logprob)

The clamps keep a stale or far-off token finite (a ratio of e^100 would overflow fp32): past a clamp the
term is constant, so its gradient is zero, the behaviour of verl's PPO and low-variance KL losses (the
same limits: log-ratios at +-20, the k3 value at 10).

`s_plus` / `s_minus` are the sums of `w_i * A_i` over the branches through u with `A_i > 0` / `A_i < 0`
and `w` the sum of their `w_i`, so `loss = sum_u L(u)` (0-dim fp32) equals the flat per-branch PPO loss
with dual clip. Tokens whose label is `ignore_index` contribute 0. `aux` holds detached per-token
tensors: `logprob`, `entropy`, `ratio`, and boolean masks `clipped_high` (r > 1 + eps_high where
s_plus != 0), `clipped_low` (r < 1 - eps_low where s_minus != 0) and `dual_clipped` (r > dual_clip_c where
s_minus != 0), all False on ignored tokens.

`impl` as in `linear_logprob_entropy`. The loss is an elementwise epilogue on the per-token log-prob and
entropy, so its gradients `g_logp = dL/dlogp` and `g_H = dL/dH` depend on the forward's values only.
When a gradient will be taken through `hidden` or `weight` (grad mode on, the per-token inputs without
gradient), the forward therefore makes dh and dW at once (`linear_loss.py`: three N x H x V GEMMs, the
backward only scales them), except fp16 on Triton. Otherwise (no grad, fp16 on Triton, gradients wanted
for the per-token inputs) the log-prob and entropy come from `linear_logprob_entropy`, whose backward
recomputes the logits. No [N, V] tensor ever exists beyond one block (except with impl="reference").
"""

import torch

from ._common import KernelInputError
from .linear import check_inputs, linear_logprob_entropy, prepare_inputs
from .linear_loss import linear_loss

# |logp - old_logprob| and |ref_logprob - logp| beyond LOG_RATIO_LIMIT, and a k3 value beyond
# KL_VALUE_LIMIT, give a constant term (zero gradient).
LOG_RATIO_LIMIT = 20.0
KL_VALUE_LIMIT = 10.0


def k3(delta: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) from `delta = ref - logp`: exp(d) - d - 1 >= 0, with
    d clamped to +-LOG_RATIO_LIMIT and the value to at most KL_VALUE_LIMIT."""
    d = torch.clamp(delta, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.clamp(torch.exp(d) - d - 1, max=KL_VALUE_LIMIT)


def _per_token_terms(logprob, entropy, labels, old_logprob, s_plus, s_minus, w, ref_logprob, clip):
    """(L(u) [N], zero on ignored tokens; ratio [N]; active [N]) for `clip` = the loss's keyword options."""
    active = labels != clip["ignore_index"]
    # Ignored tokens get ratio 1 and delta 0, so whatever their inputs hold cannot turn into NaN.
    log_ratio = torch.where(active, logprob - old_logprob, 0)
    ratio = torch.exp(torch.clamp(log_ratio, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    upper = torch.clamp(ratio, max=1 + clip["eps_high"])
    lower = torch.clamp(torch.clamp(ratio, min=1 - clip["eps_low"]), max=clip["dual_clip_c"])
    per_token = -upper * s_plus - lower * s_minus
    if ref_logprob is not None and clip["kl_coef"]:
        per_token = per_token + clip["kl_coef"] * w * k3(torch.where(active, ref_logprob - logprob, 0))
    if clip["entropy_coef"]:
        per_token = per_token - clip["entropy_coef"] * w * entropy
    return torch.where(active, per_token, 0), ratio, active


def _diagnostics(logprob, entropy, ratio, active, s_plus, s_minus, clip) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {
            "logprob": logprob.detach(),
            "entropy": entropy.detach(),
            "ratio": ratio.detach(),
            "clipped_high": active & (s_plus != 0) & (ratio > 1 + clip["eps_high"]),
            "clipped_low": active & (s_minus != 0) & (ratio < 1 - clip["eps_low"]),
            "dual_clipped": active & (s_minus != 0) & (ratio > clip["dual_clip_c"]),
        }


def tree_loss_from_logprob(
    logprob,
    entropy,
    labels,
    old_logprob,
    s_plus,
    s_minus,
    w,
    ref_logprob=None,
    *,
    eps_low=0.2,
    eps_high=0.2,
    dual_clip_c=3.0,
    kl_coef=0.0,
    entropy_coef=0.0,
    ignore_index=-100,
):
    """The loss of the module docstring from per-token (logprob, entropy) [N]: (loss, aux)."""
    clip = dict(
        eps_low=eps_low,
        eps_high=eps_high,
        dual_clip_c=dual_clip_c,
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
        ignore_index=ignore_index,
    )
    per_token, ratio, active = _per_token_terms(
        logprob, entropy, labels, old_logprob, s_plus, s_minus, w, ref_logprob, clip
    )
    return per_token.sum(), _diagnostics(logprob, entropy, ratio, active, s_plus, s_minus, clip)


def _check_per_token(n: int, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and (t.dim() != 1 or t.shape[0] != n):
            raise KernelInputError(f"{name} must have shape [{n}], got {list(t.shape)}")


def linear_tree_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    old_logprob: torch.Tensor,
    s_plus: torch.Tensor,
    s_minus: torch.Tensor,
    w: torch.Tensor,
    ref_logprob: torch.Tensor | None = None,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip_c: float = 3.0,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    impl: str = "auto",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Tree loss and per-token diagnostics; see the module docstring."""
    if hidden.dim() != 2:
        raise KernelInputError(f"hidden must have shape [N, H], got {list(hidden.shape)}")
    check_inputs(hidden, weight, labels)
    n = hidden.shape[0]
    _check_per_token(n, old_logprob=old_logprob, s_plus=s_plus, s_minus=s_minus, w=w, ref_logprob=ref_logprob)
    if kl_coef and ref_logprob is None:
        raise KernelInputError("kl_coef != 0 needs ref_logprob")
    if not 0 <= eps_low < 1 or eps_high < 0 or dual_clip_c <= 1:
        raise KernelInputError(
            f"need 0 <= eps_low < 1, eps_high >= 0, dual_clip_c > 1; got {eps_low}, {eps_high}, {dual_clip_c}"
        )
    clip = dict(
        eps_low=eps_low,
        eps_high=eps_high,
        dual_clip_c=dual_clip_c,
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
        ignore_index=ignore_index,
    )
    hidden, weight, labels, _, impl = prepare_inputs(hidden, weight, labels, temperature, ignore_index, impl)
    out_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    per_token = [
        None if t is None else t.to(out_dtype) for t in (old_logprob, s_plus, s_minus, w, ref_logprob)
    ]
    if _gradient_in_forward(impl, hidden, weight, per_token):
        terms = lambda logp, ent, r0, r1: _per_token_terms(
            logp, ent, labels[r0:r1], *(None if t is None else t[r0:r1] for t in per_token), clip
        )[0].sum()
        loss, logprob, entropy = linear_loss(hidden, weight, labels, terms, temperature, ignore_index, impl)
        with torch.no_grad():
            _, ratio, active = _per_token_terms(logprob, entropy, labels, *per_token, clip)
        return loss, _diagnostics(logprob, entropy, ratio, active, per_token[1], per_token[2], clip)
    logprob, entropy = linear_logprob_entropy(hidden, weight, labels, temperature, ignore_index, impl)
    return tree_loss_from_logprob(logprob, entropy, labels, *per_token, **clip)


def _gradient_in_forward(impl, hidden, weight, per_token) -> bool:
    """The three-GEMM path (`linear_loss.py`): a gradient will be taken through hidden or weight only.

    fp16 on Triton keeps the two-pass path (see `linear_loss.py`); without grad mode nothing is kept."""
    wants_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    data_grad = any(t is not None and t.requires_grad for t in per_token)
    fp16_triton = impl == "triton" and hidden.dtype == torch.float16
    return impl in ("triton", "torch") and wants_grad and not data_grad and not fp16_triton


def reference_linear_tree_loss(
    hidden, weight, labels, old_logprob, s_plus, s_minus, w, ref_logprob=None, **kw
):
    """The unfused torch computation: materialised logits, then the same loss (for tests)."""
    return linear_tree_loss(
        hidden, weight, labels, old_logprob, s_plus, s_minus, w, ref_logprob, impl="reference", **kw
    )
