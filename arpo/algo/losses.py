"""PPO/GRPO token losses (docs/design.md, "The loss over the tree"): the flat per-branch form, the
reference for the tree loss (whose per-unique-token form with two advantage sums lives in the fused kernel,
`arpo.kernels.linear_tree_loss`); clip-higher, dual clip, k3 KL to a reference, entropy bonus; and
the metrics, computed from weights so that the tree's equal the flat ones.

Guards: the log-ratio `logp - old` is clamped to +-LOG_RATIO_LIMIT before `exp` (as verl does: a
ratio past e^88 would overflow fp32 to inf and turn the gradient into NaN), and the k3 term takes the
fused tree loss's `k3` (exponent clamped to +-LOG_RATIO_LIMIT, value to at most KL_VALUE_LIMIT, as
verl's low-variance KL). Past a clamp the term is constant and its gradient 0, so one wild token
cannot poison an update, and both paths agree.
"""

from __future__ import annotations

import torch

from arpo.config.algo import AlgoConfig
from arpo.kernels.tree_loss import LOG_RATIO_LIMIT, k3


def policy_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """`exp(logp - old)` with the log-ratio clamped to +-LOG_RATIO_LIMIT."""
    return torch.exp(torch.clamp(logp - old_logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 KL(pi || ref) per token, clamped (see `arpo.kernels.tree_loss.k3`)."""
    return k3(ref_logp - logp)


def flat_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    w: torch.Tensor,
    entropy: torch.Tensor,
    cfg: AlgoConfig,
    ref_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token loss of one branch, the textbook way: max(-rA, -clip(r)A), dual-clipped at -cA for A < 0."""
    ratio = policy_ratio(logp, old_logp)
    clipped = torch.clamp(ratio, 1 - cfg.eps_low, 1 + cfg.eps_high)
    pg = torch.maximum(-ratio * adv, -clipped * adv)
    pg = torch.where(adv < 0, torch.minimum(pg, -cfg.dual_clip_c * adv), pg)
    loss = w * pg - cfg.entropy_coef * w * entropy
    if ref_logp is not None and cfg.kl_coef:
        loss = loss + cfg.kl_coef * w * k3_kl(logp, ref_logp)
    return loss


def weighted_metrics(
    cfg: AlgoConfig,
    ratio: torch.Tensor,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    entropy: torch.Tensor,
    w: torch.Tensor,
    w_plus: torch.Tensor,
    w_minus: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Token-mean metrics as sums over tokens of weight x value: a flat token has w = 1/N (w_plus = w
    when A > 0); a tree token carries the summed weights of the branches through it. Each is a 0-dim
    fp64 tensor on the inputs' device: callers sum them over micro-batches and read them once."""
    dot = lambda weight, value: (weight.double() * value.double()).sum()
    out = {
        "pg_clipfrac_upper": dot(w_plus, ratio > 1 + cfg.eps_high),
        "pg_clipfrac_lower": dot(w_minus, ratio < 1 - cfg.eps_low),
        "pg_clipfrac_dual": dot(w_minus, ratio > cfg.dual_clip_c),
        "ppo_kl": dot(w, old_logp - logp),
        "entropy": dot(w, entropy),
    }
    out["pg_clipfrac"] = out["pg_clipfrac_upper"] + out["pg_clipfrac_lower"]  # disjoint: A > 0 vs A < 0
    if ref_logp is not None:
        out["kl_ref"] = dot(w, k3_kl(logp, ref_logp))
    return out
