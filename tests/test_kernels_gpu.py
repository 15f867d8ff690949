"""Compiled Triton kernels on CUDA in bf16 / fp16 / fp32 against the fp64 torch reference (`make gpu-check`).

Skipped without CUDA. The reference runs in fp64 on the *rounded* inputs, so the tolerances measure
the kernels' own error: fp32 inputs (exact `ieee` dot products) 1e-4; half types 2e-2 on gradients
(`dz` is stored in the input dtype before the cuBLAS GEMMs) and 5e-3 on log-prob / entropy. Errors
are relative to max(1, largest reference magnitude) of each tensor.
"""

import pytest
import torch
from arpo.kernels import (
    linear_logprob_entropy,
    linear_tree_loss,
    logprob_entropy_from_logits,
    reference_linear_logprob_entropy,
    reference_linear_tree_loss,
    reference_logprob_entropy_from_logits,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
VALUE_TOL = {torch.float32: 1e-4, torch.bfloat16: 5e-3, torch.float16: 5e-3}
GRAD_TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}


def assert_close(actual, expected, tol, what):
    scale = max(1.0, expected.abs().max().item())
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def linear_inputs(n, h, v, dtype, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, device="cuda").to(dtype)
    weight = (torch.randn(v, h, generator=gen, device="cuda") * h**-0.5 * 3).to(dtype)
    labels = torch.randint(0, v, (n,), generator=gen, device="cuda")
    labels[-1] = v - 1
    labels[::17] = -100
    return hidden, weight, labels


def run(fn, tensors, grads):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    logp, ent = fn(*leaves)
    ((logp * grads[0]).sum() + (ent * grads[1]).sum()).backward()
    return [logp.detach(), ent.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1000, 256, 5003), (4099, 1024, 32000)])
def test_linear_triton_matches_fp64(dtype, shape):
    n, h, v = shape
    hidden, weight, labels = linear_inputs(n, h, v, dtype)
    grads = torch.randn(2, n, device="cuda", dtype=torch.float64)
    actual = run(
        lambda a, b: linear_logprob_entropy(a, b, labels, 0.9, impl="triton"), (hidden, weight), grads
    )
    expected = run(
        lambda a, b: reference_linear_logprob_entropy(a, b, labels, 0.9),
        (hidden.double(), weight.double()),
        grads,
    )
    assert actual[0].dtype == torch.float32 and actual[2].dtype == dtype
    for name, a, e, tol in zip(
        ("logprob", "entropy", "d_hidden", "d_weight"),
        actual,
        expected,
        [VALUE_TOL[dtype]] * 2 + [GRAD_TOL[dtype]] * 2,
    ):
        assert torch.isfinite(a).all(), name
        assert_close(a, e, tol, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_logits_triton_matches_fp64(dtype):
    gen = torch.Generator(device="cuda").manual_seed(1)
    logits = (torch.randn(300, 50000, generator=gen, device="cuda") * 4).to(dtype)
    logits[0, 7] += 30
    logits[1] -= 200
    logits[2, :40000] = -float("inf")
    labels = torch.randint(0, 50000, (300,), generator=gen, device="cuda")
    labels[2] = 45000
    labels[5] = -100
    grads = torch.randn(2, 300, device="cuda", dtype=torch.float64)
    actual = run(lambda z: logprob_entropy_from_logits(z, labels, 0.7, impl="triton"), (logits,), grads)
    expected = run(lambda z: reference_logprob_entropy_from_logits(z, labels, 0.7), (logits.double(),), grads)
    for name, a, e, tol in zip(("logprob", "entropy", "d_logits"), actual, expected, [VALUE_TOL[dtype]] * 3):
        assert not torch.isnan(a).any(), name
        assert_close(a, e, tol, name)


def test_linear_triton_is_deterministic():
    hidden, weight, labels = linear_inputs(2048, 512, 20000, torch.bfloat16, seed=3)
    grads = torch.randn(2, 2048, device="cuda")
    first = run(lambda a, b: linear_logprob_entropy(a, b, labels, impl="triton"), (hidden, weight), grads)
    second = run(lambda a, b: linear_logprob_entropy(a, b, labels, impl="triton"), (hidden, weight), grads)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tree_loss_triton_matches_unfused(dtype):
    hidden, weight, labels = linear_inputs(1500, 512, 10000, dtype, seed=4)
    gen = torch.Generator(device="cuda").manual_seed(5)
    n = hidden.shape[0]
    with torch.no_grad():
        logp, _ = reference_linear_logprob_entropy(hidden.double(), weight.double(), labels)
    old = (logp + torch.randn(n, generator=gen, device="cuda", dtype=torch.float64)).float()
    ref = (logp + 0.3 * torch.randn(n, generator=gen, device="cuda", dtype=torch.float64)).float()
    adv = torch.randn(n, generator=gen, device="cuda") / n
    s_plus, s_minus, w = adv.clamp(min=0), adv.clamp(max=0), torch.full((n,), 1.0 / n, device="cuda")
    args = (labels, old, s_plus, s_minus, w, ref)
    kw = dict(kl_coef=0.1, entropy_coef=0.01)
    results = []
    for fn, cast in (
        (lambda a, b: linear_tree_loss(a, b, *args, impl="triton", **kw), dtype),
        (lambda a, b: reference_linear_tree_loss(a, b, *args, **kw), torch.float64),
    ):
        a, b = hidden.detach().to(cast).requires_grad_(), weight.detach().to(cast).requires_grad_()
        loss, _ = fn(a, b)
        loss.backward()
        results.append((loss.detach(), a.grad, b.grad))
    (loss, dh, dw), (ref_loss, ref_dh, ref_dw) = results
    assert_close(loss, ref_loss, VALUE_TOL[dtype], "loss")
    assert_close(dh / ref_dh.abs().max(), ref_dh / ref_dh.abs().max(), GRAD_TOL[dtype], "d_hidden")
    assert_close(dw / ref_dw.abs().max(), ref_dw / ref_dw.abs().max(), GRAD_TOL[dtype], "d_weight")
