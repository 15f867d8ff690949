"""`linear_tree_loss` against the flat per-branch PPO loss computed from materialised fp64 logits.

Random "trees": every unique token belongs to a random non-empty set of branches, each branch with a
token weight `w_i > 0` and an advantage `A_i` of either sign; `s_plus`, `s_minus` and `w` are summed
from those. The flat reference sums, over every (branch, token) pair, the per-branch PPO loss with
dual clip of docs/design.md plus the KL (k3) and entropy terms, so it shares no code with the fused
epilogue. Old log-probs are perturbed so ratios fall far outside the clip range on both sides.

The Triton case runs the kernels in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1 before
any kernel module is imported; skipped where CUDA exists, see tests/test_kernels_gpu.py). Tolerance: loss
within 1e-5 relative, gradients within 2e-5 of the largest reference magnitude (fp32 vs fp64).
"""

import pytest
import torch
from arpo.kernels import (
    KernelInputError,
    _common,
    linear_tree_loss,
    reference_linear_logprob_entropy,
    reference_linear_tree_loss,
)
from arpo.kernels.tree_loss import KL_VALUE_LIMIT

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
CLIP = {"eps_low": 0.2, "eps_high": 0.28, "dual_clip_c": 3.0}


def make_tree(n=45, h=24, v=300, branches=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64)
    weight = torch.randn(v, h, generator=gen, dtype=torch.float64) * 0.4
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[[4, 17]] = -100  # masked tool tokens
    member = torch.rand(n, branches, generator=gen) < 0.5
    member[torch.arange(n), torch.randint(0, branches, (n,), generator=gen)] = True
    adv = torch.randn(branches, generator=gen, dtype=torch.float64)
    adv[0], adv[1] = abs(adv[0]) + 0.1, -abs(adv[1]) - 0.1  # both signs present
    w_branch = torch.rand(branches, generator=gen, dtype=torch.float64) / n + 1e-3
    with torch.no_grad():
        true_logp, _ = reference_linear_logprob_entropy(hidden, weight, labels)
    old = true_logp + torch.randn(n, generator=gen, dtype=torch.float64) * 1.5  # ratios ~ e^{+-3}
    ref = true_logp + torch.randn(n, generator=gen, dtype=torch.float64) * 0.5
    return hidden, weight, labels, old, ref, member, adv, w_branch


def tree_inputs(member, adv, w_branch):
    wa = member.double() * (w_branch * adv)
    s_plus = (wa * (adv > 0)).sum(1)
    s_minus = (wa * (adv < 0)).sum(1)
    return s_plus, s_minus, (member.double() * w_branch).sum(1)


def flat_loss(hidden, weight, labels, old, ref, member, adv, w_branch, kl_coef, entropy_coef, use_ref):
    """Sum over branches i and their tokens u of w_i * (PPO_i(u) + kl * k3(u) - ent * H(u)), fp64."""
    logp, ent = reference_linear_logprob_entropy(hidden, weight, labels)
    r = torch.exp(logp - old)
    total = hidden.new_zeros(())
    for i in range(len(adv)):
        tokens = member[:, i] & (labels != -100)
        if adv[i] > 0:
            ppo = -torch.minimum(r, torch.full_like(r, 1 + CLIP["eps_high"])) * adv[i]
        else:
            lower = torch.maximum(r, torch.full_like(r, 1 - CLIP["eps_low"]))
            ppo = -torch.minimum(lower, torch.full_like(r, CLIP["dual_clip_c"])) * adv[i]
        term = ppo - entropy_coef * ent
        if use_ref:
            d = ref - logp
            term = term + kl_coef * (torch.exp(d) - d - 1)
        total = total + (w_branch[i] * term)[tokens].sum()
    return total


def grads_of(fn, hidden, weight, dtype):
    h = hidden.detach().to(dtype).requires_grad_()
    w = weight.detach().to(dtype).requires_grad_()
    out = fn(h, w)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    return loss.detach(), h.grad, w.grad, out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "kl_coef, entropy_coef, use_ref", [(0.0, 0.0, False), (0.1, 0.01, True), (0.0, 0.05, True)]
)
def test_tree_loss_equals_flat_per_branch_loss(impl, kl_coef, entropy_coef, use_ref):
    hidden, weight, labels, old, ref, member, adv, w_branch = make_tree(
        seed=int(kl_coef * 10 + entropy_coef * 100)
    )
    s_plus, s_minus, w = tree_inputs(member, adv, w_branch)
    ref_arg = ref if use_ref else None

    def fused(h, wt):
        return linear_tree_loss(
            h,
            wt,
            labels,
            old,
            s_plus,
            s_minus,
            w,
            ref_arg,
            kl_coef=kl_coef,
            entropy_coef=entropy_coef,
            impl=impl,
            **CLIP,
        )

    def flat(h, wt):
        return flat_loss(h, wt, labels, old, ref, member, adv, w_branch, kl_coef, entropy_coef, use_ref)

    loss, dh, dw, (_, aux) = grads_of(fused, hidden, weight, torch.float32)
    ref_loss, ref_dh, ref_dw, _ = grads_of(flat, hidden, weight, torch.float64)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * max(1.0, abs(ref_loss.item()))
    for name, a, e in (("d_hidden", dh, ref_dh), ("d_weight", dw, ref_dw)):
        err = (a.double() - e).abs().max().item()
        assert err <= 2e-5 * e.abs().max().item(), f"{name}: {err:.3g}"
    assert (dh[[4, 17]] == 0).all()  # ignored labels: no gradient

    ratio = aux["ratio"].double()
    active = labels != -100
    assert aux["clipped_high"].any() and aux["clipped_low"].any() and aux["dual_clipped"].any()
    assert torch.equal(aux["clipped_high"], active & (s_plus != 0) & (ratio > 1 + CLIP["eps_high"]))
    assert torch.equal(aux["dual_clipped"], active & (s_minus != 0) & (ratio > CLIP["dual_clip_c"]))
    assert not aux["logprob"].requires_grad and aux["logprob"][4] == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_fused_equals_unfused_torch_computation(impl):
    hidden, weight, labels, old, ref, member, adv, w_branch = make_tree(n=70, v=700, seed=3)
    s_plus, s_minus, w = tree_inputs(member, adv, w_branch)
    kw = dict(kl_coef=0.2, entropy_coef=0.03, temperature=0.8, **CLIP)
    args = (labels, old, s_plus, s_minus, w, ref)
    fused = lambda h, wt: linear_tree_loss(h, wt, *args, impl=impl, **kw)
    unfused = lambda h, wt: reference_linear_tree_loss(h, wt, *args, **kw)
    loss, dh, dw, (_, aux) = grads_of(fused, hidden, weight, torch.float32)
    ref_loss, ref_dh, ref_dw, (_, ref_aux) = grads_of(unfused, hidden, weight, torch.float32)
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * max(1.0, abs(ref_loss.item()))
    for a, e in ((dh, ref_dh), (dw, ref_dw)):
        assert (a - e).abs().max() <= 2e-5 * e.abs().max()
    for key in ("clipped_high", "clipped_low", "dual_clipped"):
        assert torch.equal(aux[key], ref_aux[key]), key


def test_tree_loss_rejects_bad_input():
    hidden, weight, labels, old, ref, member, adv, w_branch = make_tree(n=20, v=50)
    s_plus, s_minus, w = tree_inputs(member, adv, w_branch)
    with pytest.raises(KernelInputError, match="ref_logprob"):
        linear_tree_loss(hidden, weight, labels, old, s_plus, s_minus, w, kl_coef=0.1)
    with pytest.raises(KernelInputError, match="s_minus"):
        linear_tree_loss(hidden, weight, labels, old, s_plus, s_minus[:-1], w)
    with pytest.raises(KernelInputError, match="dual_clip_c"):
        linear_tree_loss(hidden, weight, labels, old, s_plus, s_minus, w, dual_clip_c=0.5)


@pytest.mark.parametrize("impl", IMPLS)
def test_far_off_ratio_and_reference_stay_finite_with_zero_gradient_past_the_clamps(impl):
    """A ratio of e^100 and ref - logp = 95 overflow fp32 unclamped; past the clamps the terms are
    constant (verl's behaviour): exactly the clamped values, and no gradient from those tokens."""
    hidden, weight, labels, old, ref, member, adv, w_branch = make_tree(n=30, v=200, seed=7)
    s_plus, s_minus, w = tree_inputs(member, adv, w_branch)
    with torch.no_grad():
        logp, _ = reference_linear_logprob_entropy(hidden, weight, labels)
    far = torch.zeros(30, dtype=torch.bool)
    far[[0, 1, 2]] = True
    old = torch.where(far, logp - 100.0, old)  # r = e^100
    ref = torch.where(far, logp + 95.0, ref)  # exp(ref - logp) = e^95
    args = (labels, old, s_plus, s_minus, w, ref)
    fused = lambda h, wt: linear_tree_loss(h, wt, *args, kl_coef=0.1, impl=impl, **CLIP)
    loss, dh, dw, (_, aux) = grads_of(fused, hidden, weight, torch.float32)
    assert torch.isfinite(loss) and torch.isfinite(dh).all() and torch.isfinite(dw).all()
    assert torch.allclose(aux["ratio"][far].double(), torch.tensor(20.0).exp().double(), rtol=1e-6)
    assert (dh[far] == 0).all()  # ratio clipped or clamped, KL exponent clamped: nothing flows back
    near = lambda h, wt: linear_tree_loss(
        h, wt, labels, torch.where(far, logp, old), s_plus, s_minus, w, torch.where(far, logp, ref),
        kl_coef=0.1, impl=impl, **CLIP,
    )  # fmt: skip
    near_loss = grads_of(near, hidden, weight, torch.float32)[0]
    k3_at_limit = KL_VALUE_LIMIT  # e^95 - 96, clamped
    expected_far = sum(  # per far token: ratio term at e^20 (clipped) + KL at the clamp, minus at r = 1
        (-(1 + CLIP["eps_high"]) * s_plus[i] - CLIP["dual_clip_c"] * s_minus[i] + 0.1 * w[i] * k3_at_limit)
        - (-s_plus[i] - s_minus[i])
        for i in range(3)
        if labels[i] != -100
    )
    assert abs((loss - near_loss).item() - float(expected_far)) <= 1e-4 * abs(float(expected_far))
