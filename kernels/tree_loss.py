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

The log-prob/entropy come from `linear_logprob_entropy` (same `impl` choices); the loss is an
elementwise epilogue on those [N] vectors, so autograd hands the fused backward
`g_logp = dL/dlogp` and `g_H = dL/dH` and no [N, V] tensor ever exists (except with impl="reference").
"""

import torch

from ._common import KernelInputError
from .linear import linear_logprob_entropy

# |logp - old_logprob| and |ref_logprob - logp| beyond LOG_RATIO_LIMIT, and a k3 value beyond
# KL_VALUE_LIMIT, give a constant term (zero gradient).
LOG_RATIO_LIMIT = 20.0
KL_VALUE_LIMIT = 10.0


def k3(delta: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) from `delta = ref - logp`: exp(d) - d - 1 >= 0, with
    d clamped to +-LOG_RATIO_LIMIT and the value to at most KL_VALUE_LIMIT."""
    d = torch.clamp(delta, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.clamp(torch.exp(d) - d - 1, max=KL_VALUE_LIMIT)


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
    active = labels != ignore_index
    # Ignored tokens get ratio 1 and delta 0, so whatever their inputs hold cannot turn into NaN.
    log_ratio = torch.where(active, logprob - old_logprob, 0)
    ratio = torch.exp(torch.clamp(log_ratio, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    upper = torch.clamp(ratio, max=1 + eps_high)
    lower = torch.clamp(torch.clamp(ratio, min=1 - eps_low), max=dual_clip_c)
    per_token = -upper * s_plus - lower * s_minus
    if ref_logprob is not None and kl_coef:
        per_token = per_token + kl_coef * w * k3(torch.where(active, ref_logprob - logprob, 0))
    if entropy_coef:
        per_token = per_token - entropy_coef * w * entropy
    loss = torch.where(active, per_token, 0).sum()
    with torch.no_grad():
        aux = {
            "logprob": logprob.detach(),
            "entropy": entropy.detach(),
            "ratio": ratio.detach(),
            "clipped_high": active & (s_plus != 0) & (ratio > 1 + eps_high),
            "clipped_low": active & (s_minus != 0) & (ratio < 1 - eps_low),
            "dual_clipped": active & (s_minus != 0) & (ratio > dual_clip_c),
        }
    return loss, aux


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
    n = hidden.shape[0]
    _check_per_token(n, old_logprob=old_logprob, s_plus=s_plus, s_minus=s_minus, w=w, ref_logprob=ref_logprob)
    if kl_coef and ref_logprob is None:
        raise KernelInputError("kl_coef != 0 needs ref_logprob")
    if not 0 <= eps_low < 1 or eps_high < 0 or dual_clip_c <= 1:
        raise KernelInputError(
            f"need 0 <= eps_low < 1, eps_high >= 0, dual_clip_c > 1; got {eps_low}, {eps_high}, {dual_clip_c}"
        )
    logprob, entropy = linear_logprob_entropy(hidden, weight, labels, temperature, ignore_index, impl)
    like_out = lambda t: None if t is None else t.to(logprob.dtype)
    return tree_loss_from_logprob(
        logprob,
        entropy,
        labels,
        like_out(old_logprob),
        like_out(s_plus),
        like_out(s_minus),
        like_out(w),
        like_out(ref_logprob),
        eps_low=eps_low,
        eps_high=eps_high,
        dual_clip_c=dual_clip_c,
        kl_coef=kl_coef,
        entropy_coef=entropy_coef,
        ignore_index=ignore_index,
    )


def reference_linear_tree_loss(
    hidden, weight, labels, old_logprob, s_plus, s_minus, w, ref_logprob=None, **kw
):
    """The unfused torch computation: materialised logits, then the same loss (for tests)."""
    return linear_tree_loss(
        hidden, weight, labels, old_logprob, s_plus, s_minus, w, ref_logprob, impl="reference", **kw
    )
