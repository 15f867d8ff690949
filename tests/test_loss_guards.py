"""Numerical guards of the policy loss: a log-ratio of 100 (ratio e^100, past fp32's e^88) and a k3
exponent `ref - logp` of 95 give a finite loss and finite gradients on the flat loss, the tree loss
(chunked torch path) and the fused Triton path (in Triton's CPU interpreter), and the gradient is 0
past each clamp while tokens inside it keep theirs.
"""

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from arpo.kernels import _common, linear_tree_loss, reference_linear_logprob_entropy  # noqa: E402
from arpo.kernels.tree_loss import KL_VALUE_LIMIT  # noqa: E402

from arpo.algo.losses import LOG_RATIO_LIMIT, flat_token_loss, k3_kl, policy_ratio  # noqa: E402
from arpo.config.algo import AlgoConfig  # noqa: E402

CFG = AlgoConfig(eps_low=0.2, eps_high=0.28, dual_clip_c=3.0, kl_coef=0.1, entropy_coef=0.01)
# Per token: log-ratio logp - old, k3 exponent ref - logp, advantage. Tokens 0-3 lie past a clamp.
LOG_RATIO = [100.0, 100.0, 0.1, -0.05, 0.02, -0.1]
REF_DELTA = [0.3, -0.2, 95.0, -95.0, 0.5, -0.4]
ADV = [1.0, -1.0, 0.5, -0.5, 1.0, -1.0]
WILD = slice(0, 4)
IMPLS = [
    "torch",
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(
            torch.cuda.is_available() or not _common.triton_available(),
            reason="interpreter cases run on CPU-only machines with triton installed",
        ),
    ),
]


def test_ratio_and_k3_are_clamped_with_zero_gradient_past_the_clamp():
    d = torch.tensor([100.0, -100.0, 3.0, 0.5], requires_grad=True)
    ratio = policy_ratio(d, torch.zeros(4))
    ratio.sum().backward()
    assert torch.isfinite(ratio).all()
    assert ratio[0].item() == pytest.approx(math.exp(LOG_RATIO_LIMIT), rel=1e-6)
    assert d.grad[:2].tolist() == [0.0, 0.0]
    assert d.grad[2:].tolist() == pytest.approx(ratio[2:].tolist())
    # 95: exponent clamped to 20, value to 10; -95: exponent -20 gives 19, value clamped to 10;
    # 3: e^3 - 4 = 16.1, value clamped; 2 and 0.5 lie inside both clamps.
    logp = torch.zeros(5, requires_grad=True)
    kl = k3_kl(logp, torch.tensor([95.0, -95.0, 3.0, 2.0, 0.5]))
    kl.sum().backward()
    inside = [math.exp(2) - 3, math.exp(0.5) - 1.5]
    assert kl.tolist() == pytest.approx([KL_VALUE_LIMIT] * 3 + inside, rel=1e-6)
    assert logp.grad[:3].tolist() == [0.0, 0.0, 0.0]
    assert logp.grad[3:].tolist() == pytest.approx([1 - math.exp(2), 1 - math.exp(0.5)], rel=1e-6)


def test_flat_loss_is_finite_with_wild_ratios():
    """Tokens 0-1: only their k3 term has a gradient (the log-ratio is clamped); tokens 2-3: only
    their policy term (the k3 term is clamped); tokens 4-5: both."""
    logp = torch.tensor([-1.0, -2.0, -0.5, -3.0, -1.5, -0.7], requires_grad=True)
    old = logp.detach() - torch.tensor(LOG_RATIO)
    ref = logp.detach() + torch.tensor(REF_DELTA)
    w = torch.full((6,), 1 / 6)
    loss = flat_token_loss(logp, old, torch.tensor(ADV), w, torch.rand(6), CFG, ref).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    d, r = torch.tensor(REF_DELTA), torch.exp(torch.tensor(LOG_RATIO))
    kl_grad = -CFG.kl_coef * w * (torch.exp(d) - 1)  # d/dlogp of k3(ref - logp)
    pg_grad = -r * torch.tensor(ADV) * w  # unclipped -r * A
    torch.testing.assert_close(logp.grad[:2], kl_grad[:2])
    torch.testing.assert_close(logp.grad[2:4], pg_grad[2:4])
    torch.testing.assert_close(logp.grad[4:], kl_grad[4:] + pg_grad[4:])


def _wild_tree():
    gen = torch.Generator().manual_seed(0)
    n, h, v = len(ADV), 16, 64
    hidden = torch.randn(n, h, generator=gen)
    weight = torch.randn(v, h, generator=gen) * 0.3
    labels = torch.randint(0, v, (n,), generator=gen)
    with torch.no_grad():
        logp, _ = reference_linear_logprob_entropy(hidden.double(), weight.double(), labels)
    old = (logp - torch.tensor(LOG_RATIO, dtype=torch.float64)).float()
    ref = (logp + torch.tensor(REF_DELTA, dtype=torch.float64)).float()
    return hidden, weight, labels, old, ref


@pytest.mark.parametrize("impl", IMPLS)
def test_tree_loss_is_finite_with_wild_ratios(impl):
    """One branch per token: the tree loss equals the flat loss on materialised logits, value and
    gradients, under the clamps."""
    hidden, weight, labels, old, ref = _wild_tree()
    w = torch.full((len(ADV),), 1.0 / len(ADV))
    adv = torch.tensor(ADV)
    h, wt = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, aux = linear_tree_loss(
        h, wt, labels, old, (w * adv).clamp(min=0), (w * adv).clamp(max=0), w, ref,
        eps_low=CFG.eps_low, eps_high=CFG.eps_high, dual_clip_c=CFG.dual_clip_c, kl_coef=CFG.kl_coef,
        entropy_coef=CFG.entropy_coef, impl=impl,
    )  # fmt: skip
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(aux["ratio"]).all()
    assert torch.isfinite(h.grad).all() and torch.isfinite(wt.grad).all()
    h_flat, wt_flat = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logp_all = torch.log_softmax(h_flat @ wt_flat.T, -1)
    logp = logp_all.gather(1, labels[:, None])[:, 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    flat = flat_token_loss(logp, old, adv, w, entropy, CFG, ref).sum()
    flat.backward()
    assert loss.item() == pytest.approx(flat.item(), rel=1e-5)
    torch.testing.assert_close(h.grad, h_flat.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(wt.grad, wt_flat.grad, rtol=1e-4, atol=1e-6)
