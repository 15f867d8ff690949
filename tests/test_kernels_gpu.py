"""The Triton kernels against an fp64 reference, strict enough to catch a wrong kernel.

Runs on CUDA (compiled kernels, fp32 / bf16 / fp16, larger shapes) and, where there is no CUDA, in
Triton's CPU interpreter (`TRITON_INTERPRET=1` set below before any kernel module loads; fp32 / fp16:
bf16 `tl.dot` is wrong in the interpreter; small shapes). The device is the `device` parameter.

The reference runs in fp64 on the *rounded* inputs, so errors measure the kernels alone:
- values (log-prob, entropy): within 1e-4 x max(1, |reference|) per token, every dtype (the forward
  accumulates exact products in fp32);
- gradients, row by row (each token's dh, each vocabulary row's dW): ||actual - ref|| <= tol x ||ref||
  beyond the rounding of the reference to the gradient's dtype, and exactly zero where the reference
  row is zero (ignored labels). `GRAD_TOL` is set by the
  precision of the stored gradient and the dz workspace: 1e-4 fp32, 1e-3 fp16, 8e-3 bf16.

Cases: H = 96 (not a multiple of any BLOCK_H), a vocabulary that is no multiple of any tile,
temperature != 1, a large common logit offset, token-mean-scale upstream gradients in fp16, N x V >
2^31 for the from-logits kernel (CUDA only), determinism across two processes, and the tree loss's
gradient-in-forward path in several row blocks. The last test breaks
the kernels on purpose (source patches of `_linear_triton.py`, interpreter only) and asserts that
these checks fail on every broken variant and pass on the unpatched source.
"""

import importlib.util
import linecache
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

from arpo.kernels import (  # noqa: E402
    _common,
    linear_logprob_entropy,
    linear_loss,
    linear_tree_loss,
    logprob_entropy_from_logits,
    reference_linear_logprob_entropy,
    reference_linear_tree_loss,
    reference_logprob_entropy_from_logits,
)

pytestmark = pytest.mark.skipif(not _common.triton_available(), reason="triton is not installed")
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.bfloat16, torch.float16] if CUDA else [torch.float32, torch.float16]
VALUE_TOL = 1e-4
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 1e-3, torch.bfloat16: 8e-3}
# (N, H, V): the interpreter's cost grows with the number of programs, so its shapes are small.
SHAPES = [(1000, 96, 5003), (4099, 1024, 32000)] if CUDA else [(70, 96, 600)]
TOKEN_MEAN = 2.0**-16  # the upstream gradient of a mean over 65536 tokens


@pytest.fixture(params=[DEVICE])
def device(request):
    return request.param


def assert_values_close(actual, expected, what):
    err = (actual.double() - expected.double()).abs()
    worst = (err / expected.double().abs().clamp(min=1.0)).max().item()
    assert worst <= VALUE_TOL, f"{what}: relative error {worst:.3g} > {VALUE_TOL:g}"


def assert_rows_close(actual, expected, tol, what):
    """Per row: ||a - e|| <= tol ||e|| + ||round(e) - e||, where round() stores e in the dtype of `a`
    (no kernel beats the rounding of its output: fp16 gradients at token-mean scale are subnormal);
    rows whose reference is zero must be exactly zero."""
    a, e = actual.double().flatten(1), expected.double().flatten(1)
    stored = (expected.to(actual.dtype).double().flatten(1) - e).norm(dim=1)
    err, norm = (a - e).norm(dim=1) - stored, e.norm(dim=1)
    zero = norm == 0
    assert (a[zero] == 0).all(), f"{what}: rows {zero.nonzero().flatten()[:8].tolist()} should be 0"
    rel = err[~zero] / norm[~zero]
    if rel.numel():
        worst = rel.argmax().item()
        row = (~zero).nonzero().flatten()[worst].item()
        assert rel[worst] <= tol, f"{what}: row {row} relative error {rel[worst]:.3g} > {tol:g}"


def linear_inputs(n, h, v, dtype, device, seed=0, offset=0.0):
    """Rounded inputs; `offset` adds a common constant to every logit (through hidden column 0)."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64)
    weight = torch.randn(v, h, generator=gen, dtype=torch.float64) * h**-0.5 * 3
    if offset:
        hidden[:, 0] = 1.0
        weight[:, 0] = offset
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[-1] = v - 1
    labels[::17] = -100
    cast = lambda t: t.to(dtype).to(device)
    return cast(hidden), cast(weight), labels.to(device)


def upstream(n, device, seed=1, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, n, generator=gen, dtype=torch.float64) * scale).to(device)


def run(fn, tensors, grads):
    """(outputs..., grads of tensors...) of sum(out_k * grads[k])."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    outs = fn(*leaves)
    sum((out * g.to(out.dtype)).sum() for out, g in zip(outs, grads)).backward()
    return [out.detach() for out in outs] + [t.grad for t in leaves]


def check_linear(n, h, v, dtype, device, temperature=0.7, offset=0.0, grad_scale=1.0, seed=0, grad_tol=None):
    """The fused linear kernels against the fp64 reference on the same rounded inputs."""
    grad_tol = grad_tol or GRAD_TOL[dtype]
    hidden, weight, labels = linear_inputs(n, h, v, dtype, device, seed, offset)
    grads = upstream(n, device, seed + 1, grad_scale)
    fused = lambda a, b: linear_logprob_entropy(a, b, labels, temperature, impl="triton")
    ref = lambda a, b: reference_linear_logprob_entropy(a, b, labels, temperature)
    actual = run(fused, (hidden, weight), grads)
    expected = run(ref, (hidden.double(), weight.double()), grads)
    assert actual[0].dtype == torch.float32 and actual[2].dtype == dtype
    assert_values_close(actual[0], expected[0], "logprob")
    assert_values_close(actual[1], expected[1], "entropy")
    # With an offset, dh's column 0 is exactly 0 (softmax ignores a common shift) and computes as the
    # cancelling sum offset x sum_v dz_v: rounding noise of ~1e-3 even in fp32, not a kernel property.
    skip = 1 if offset else 0
    assert_rows_close(actual[2][:, skip:], expected[2][:, skip:], grad_tol, "d_hidden")
    assert_rows_close(actual[3], expected[3], grad_tol, "d_weight")
    return actual


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_linear_matches_fp64(device, dtype, shape):
    check_linear(*shape, dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_large_logit_offset(device, dtype):
    """Every logit near +140: exp() overflows fp32 unless the running max is subtracted. fp32 logits of
    that size carry absolute errors ~1e-5, so gradients get 3e-3 here (values keep 1e-4)."""
    check_linear(*SHAPES[0], dtype, device, offset=100.0, seed=2, grad_tol=max(3e-3, GRAD_TOL[dtype]))


def test_linear_fp16_token_mean_scale_gradients(device):
    """Upstream gradients of a token mean (2^-16) in fp16: dz would underflow without rescaling."""
    n, h, v = SHAPES[0]
    check_linear(n, h, v, torch.float16, device, grad_scale=TOKEN_MEAN, seed=3)
    hidden, weight, labels = linear_inputs(n, h, v, torch.float16, device, seed=3)
    grads = upstream(n, device, 4, TOKEN_MEAN)
    fused = lambda a, b: linear_logprob_entropy(a, b, labels, 0.7, impl="triton")
    half = run(fused, (hidden, weight), grads)
    single = run(fused, (hidden.float(), weight.float()), grads)
    for name, a, e in zip(("d_hidden", "d_weight"), half[2:], single[2:]):
        assert_rows_close(a, e, 1e-3, f"fp16 vs fp32 path, {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_logits_matches_fp64(device, dtype):
    n, v = (300, 50000) if CUDA else (12, 700)
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(n, v, generator=gen, dtype=torch.float64) * 4
    logits[0, 7] += 30
    logits[1] -= 200
    logits[2, : v * 4 // 5] = -float("inf")
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[2] = v - 3
    labels[5] = -100
    logits, labels = logits.to(dtype).to(device), labels.to(device)
    grads = upstream(n, device, 2)
    actual = run(lambda z: logprob_entropy_from_logits(z, labels, 0.7, impl="triton"), (logits,), grads)
    expected = run(lambda z: reference_logprob_entropy_from_logits(z, labels, 0.7), (logits.double(),), grads)
    assert_values_close(actual[0], expected[0], "logprob")
    assert_values_close(actual[1], expected[1], "entropy")
    assert_rows_close(actual[2], expected[2], GRAD_TOL[dtype], "d_logits")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs 4.3 GB of logits on a CUDA device")
def test_from_logits_beyond_two_to_the_31_elements():
    """N x V > 2^31: element offsets of the last rows overflow int32."""
    n, v = 14200, 152064
    gen = torch.Generator(device="cuda").manual_seed(5)
    logits = torch.randn(n, v, generator=gen, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, v, (n,), generator=gen, device="cuda")
    grads = torch.randn(2, n, generator=gen, device="cuda", dtype=torch.float64)
    z = logits.requires_grad_()
    logp, ent = logprob_entropy_from_logits(z, labels, impl="triton")
    ((logp * grads[0]).sum() + (ent * grads[1]).sum()).backward()
    rows = torch.tensor([0, n // 2, n - 2, n - 1], device="cuda")
    assert (n - 1) * v > 2**31
    expected = run(
        lambda x: reference_logprob_entropy_from_logits(x, labels[rows]),
        (logits.detach()[rows].double(),),
        grads[:, rows],
    )
    assert_values_close(logp.detach()[rows], expected[0], "logprob")
    assert_values_close(ent.detach()[rows], expected[1], "entropy")
    assert_rows_close(z.grad[rows], expected[2], GRAD_TOL[torch.bfloat16], "d_logits")


DETERMINISM_SCRIPT = """
import sys, hashlib, torch
sys.path.insert(0, {root!r})
from tests.test_kernels_gpu import check_linear
outs = check_linear({n}, {h}, {v}, torch.float32, {device!r}, seed=6)
print(hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in outs)).hexdigest())
"""


def test_linear_bitwise_deterministic_across_processes(device):
    root = str(Path(__file__).resolve().parent.parent)
    n, h, v = SHAPES[0]
    code = DETERMINISM_SCRIPT.format(root=root, n=n, h=h, v=v, device=device)
    digests = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.append(proc.stdout.split()[-1])
    assert digests[0] == digests[1]


@pytest.mark.parametrize("offset", [0.0, 30.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16] if CUDA else [torch.float32])
def test_tree_loss_matches_unfused(device, dtype, offset, monkeypatch):
    """The gradient-in-forward path (`linear_loss.py`) in six row blocks: logits kept tile-relative (fp16
    for bf16) and bf16 dz written over them, dW summed in bf16 over the blocks (twice the one-rounding
    tolerance); also with every logit near +30, where the kept logits must not lose precision."""
    n, h, v = (1500, 512, 10000) if CUDA else (60, 96, 500)
    row_bytes = linear_loss.row_bytes(v, dtype, "triton")
    monkeypatch.setitem(linear_loss.WORKSPACE_BYTES, DEVICE, (n // 6) * row_bytes)
    hidden, weight, labels = linear_inputs(n, h, v, dtype, device, seed=4, offset=offset)
    gen = torch.Generator().manual_seed(5)
    noise = lambda scale: (torch.randn(n, generator=gen, dtype=torch.float64) * scale).to(device)
    with torch.no_grad():
        logp, _ = reference_linear_logprob_entropy(hidden.double(), weight.double(), labels)
    old, ref = (logp + noise(1.0)).float(), (logp + noise(0.3)).float()
    adv = noise(1.0).float() / n
    s_plus, s_minus, w = adv.clamp(min=0), adv.clamp(max=0), torch.full((n,), 1.0 / n, device=device)
    args = (labels, old, s_plus, s_minus, w, ref)
    kw = dict(kl_coef=0.1, entropy_coef=0.01)
    fused = lambda a, b: (linear_tree_loss(a, b, *args, impl="triton", **kw)[0],)
    unfused = lambda a, b: (reference_linear_tree_loss(a, b, *args, **kw)[0],)
    one = torch.ones(1, dtype=torch.float64, device=device)
    loss, dh, dw = run(fused, (hidden, weight), [one])
    ref_loss, ref_dh, ref_dw = run(unfused, (hidden.double(), weight.double()), [one])
    assert_values_close(loss, ref_loss, "loss")
    # fp32 logits near 43 carry absolute errors ~1e-6 in any path (see `test_linear_large_logit_offset`)
    tol = max(GRAD_TOL[dtype], 1e-3) if offset else GRAD_TOL[dtype]
    skip = 1 if offset else 0  # dh's column 0: a cancelling sum (see `check_linear`)
    assert_rows_close(dh[:, skip:], ref_dh[:, skip:], tol, "d_hidden")
    assert_rows_close(dw, ref_dw, tol * (2 if dtype == torch.bfloat16 else 1), "d_weight")


# ------------------------------------------------------------------ broken kernels must fail the checks

KERNEL_SOURCE = Path(importlib.util.find_spec("arpo.kernels").origin).with_name("_linear_triton.py")
MUTATIONS = {  # name: (text in _linear_triton.py, its broken replacement)
    "unpatched": ("", ""),
    "no 1/T in dz": (
        "dz = tl.where(keep, dz * inv_temp, 0.0)",
        "dz = tl.where(keep, dz, 0.0)",
    ),
    "entropy gradient not centred": (
        "g_ent[:, None] * (z - mean_z[:, None])",
        "g_ent[:, None] * z",
    ),
    "running sum not rescaled": (
        "s = s * rescale + tl.sum(e, axis=1)",
        "s = s + tl.sum(e, axis=1)",
    ),
    "last vocabulary column dropped in the forward": (
        "        col_ok = cols < v_end\n",
        "        col_ok = (cols < v_end) & (cols != V - 1)\n",
    ),
    "one vocabulary row's gradient zeroed": (
        "dz = tl.where(keep, dz * inv_temp, 0.0)",
        "dz = tl.where(keep & (cols[None, :] != 3), dz * inv_temp, 0.0)",
    ),
}


def patched_kernel_module(original: str, broken: str) -> types.ModuleType:
    """`_linear_triton` built from its source with one text replaced (registered with linecache,
    where Triton reads kernel source from)."""
    source = KERNEL_SOURCE.read_text()
    if original:
        assert source.count(original) == 1, f"{original!r} is not one place in {KERNEL_SOURCE.name}"
        source = source.replace(original, broken)
    name = "arpo.kernels._linear_triton"
    filename = f"<patched {KERNEL_SOURCE.name}: {broken[:40]!r}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__package__, module.__file__ = "arpo.kernels", filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


@pytest.mark.skipif(CUDA, reason="shown in the interpreter; a GPU run spends its time on the real kernels")
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_broken_kernels_fail_these_checks(mutation, monkeypatch):
    module = patched_kernel_module(*MUTATIONS[mutation])
    monkeypatch.setitem(sys.modules, module.__name__, module)
    n, h, v = SHAPES[0]
    check = lambda: check_linear(n, h, v, torch.float32, DEVICE, offset=3.0, seed=8)
    if mutation == "unpatched":
        check()  # the loader itself breaks nothing
        return
    with pytest.raises(AssertionError):
        check()
