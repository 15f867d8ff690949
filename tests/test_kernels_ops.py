"""`linear_logprob_entropy` and `logprob_entropy_from_logits` against the float64 torch reference.

Each case runs the chunked torch path and the Triton kernels. Without CUDA the Triton kernels run in
Triton's CPU interpreter: tests/conftest.py sets `TRITON_INTERPRET=1` before any triton kernel is defined
(`arpo.kernels` imports its kernel modules lazily, at the first Triton call), in fp32 (bf16 `tl.dot`
is wrong in the interpreter) with small shapes. With CUDA the Triton cases are left to
tests/test_kernels_gpu.py, so this module never switches a GPU run to the interpreter.

Tolerances (fp32 inputs vs the fp64 reference): values and gradients within 2e-5 of the reference,
relative to max(1, largest reference magnitude) of that tensor.
"""

import subprocess
import sys

import pytest
import torch
from arpo.kernels import (
    KernelInputError,
    _common,
    from_logits,
    linear,
    linear_logprob_entropy,
    logprob_entropy_from_logits,
    reference_linear_logprob_entropy,
    reference_logprob_entropy_from_logits,
)

TRITON_CASE = pytest.param(
    "triton",
    marks=pytest.mark.skipif(
        torch.cuda.is_available() or not _common.triton_available(),
        reason="interpreter cases run on CPU-only machines with triton installed",
    ),
)
IMPLS = ["torch", TRITON_CASE]
TOL = 2e-5


def assert_close(actual, expected, tol=TOL, what=""):
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    err = (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def linear_case(n=37, h=70, v=600, seed=0, ignored=(3,)):
    """fp64 inputs with ragged shapes; the last label sits in the last, partial vocabulary tile."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64)
    weight = torch.randn(v, h, generator=gen, dtype=torch.float64) * 0.3
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[-1] = v - 1
    labels[list(ignored)] = -100
    return hidden, weight, labels


def upstream(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(
        n, generator=gen, dtype=torch.float64
    )


def run_linear(hidden, weight, labels, grads, temperature, impl, dtype=torch.float32):
    """(logp, ent, dh, dW) with `grads` = (g_logp | None, g_ent | None)."""
    h = hidden.detach().to(dtype).requires_grad_()
    w = weight.detach().to(dtype).requires_grad_()
    logp, ent = linear_logprob_entropy(h, w, labels, temperature, impl=impl)
    loss = sum((out * g.to(out.dtype)).sum() for out, g in zip((logp, ent), grads) if g is not None)
    loss.backward()
    return logp.detach(), ent.detach(), h.grad, w.grad


def check_linear(hidden, weight, labels, grads, temperature, impl, tol=TOL):
    expected = run_linear(hidden, weight, labels, grads, temperature, "reference", torch.float64)
    actual = run_linear(hidden, weight, labels, grads, temperature, impl)
    for name, a, e in zip(("logprob", "entropy", "d_hidden", "d_weight"), actual, expected):
        assert a.dtype == (torch.float32 if name in ("logprob", "entropy") else a.dtype)
        assert torch.isfinite(a).all(), name
        assert_close(a, e, tol, name)
    return actual


@pytest.fixture
def small_chunks(monkeypatch):
    """Several vocabulary chunks in backward and several row chunks on the from-logits torch path."""
    monkeypatch.setitem(linear.WORKSPACE_ELEMENTS, "cpu", 37 * 256)
    monkeypatch.setattr(from_logits, "ROW_CHUNK_ELEMENTS", 600 * 8)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("which", ["both", "logprob", "entropy"])
def test_linear_matches_reference(impl, which, small_chunks):
    hidden, weight, labels = linear_case()
    g_lp, g_ent = upstream(len(labels))
    grads = (g_lp if which != "entropy" else None, g_ent if which != "logprob" else None)
    logp, ent, dh, _ = check_linear(hidden, weight, labels, grads, 0.7, impl)
    assert logp[3] == 0 and ent[3] == 0 and (dh[3] == 0).all()  # the ignored label


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_multiple_row_blocks_and_splits(impl):
    hidden, weight, labels = linear_case(n=130, h=33, v=1100, seed=2, ignored=(0, 64, 129))
    check_linear(hidden, weight, labels, upstream(130, seed=3), 1.3, impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_peaky_and_very_negative_logits(impl):
    hidden, weight, labels = linear_case(n=20, h=40, v=300, seed=4, ignored=())
    weight = weight * 0.1
    hidden[:, 0] = 1.0
    weight[:, 0] = -150.0  # every logit near -150
    weight[7] = 30.0 * hidden[5] / hidden[5].square().sum()  # row 5 gets +30 on logit 7 ...
    weight[7, 0] = 0.0
    hidden[5, 0] = 0.0  # ... and the rest of row 5 stays near 0, not -150
    labels[5] = 7
    labels[6] = 7
    logp, ent, _, _ = check_linear(hidden, weight, labels, upstream(20, seed=5), 1.0, impl)
    assert logp[5] > -1e-6 and ent[5] < 1e-6


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_batch(impl):
    hidden, weight = torch.zeros(0, 8), torch.randn(300, 8)
    empty = torch.zeros(0, dtype=torch.long)
    logp, ent = linear_logprob_entropy(hidden, weight, empty, impl=impl)
    assert logp.shape == ent.shape == (0,)
    logp, ent = logprob_entropy_from_logits(hidden @ weight.T, empty, impl=impl)
    assert logp.shape == ent.shape == (0,)


def test_linear_half_precision_torch_path():
    hidden, weight, labels = linear_case()
    grads = upstream(len(labels))
    rounded = hidden.bfloat16().double(), weight.bfloat16().double()
    expected = run_linear(*rounded, labels, grads, 1.0, "reference", torch.float64)
    actual = run_linear(hidden, weight, labels, grads, 1.0, "torch", torch.bfloat16)
    assert actual[0].dtype == torch.float32 and actual[2].dtype == torch.bfloat16
    for name, a, e in zip(("logprob", "entropy", "d_hidden", "d_weight"), actual, expected):
        assert_close(a, e, 1e-2, name)  # bf16 gradients: 8 significant bits


def test_linear_torch_path_gradcheck_float64(monkeypatch):
    monkeypatch.setattr(linear, "CHUNK_MULTIPLE", 8)
    monkeypatch.setitem(linear.WORKSPACE_ELEMENTS, "cpu", 4 * 8)  # three vocabulary chunks: 8, 8, 4
    hidden, weight, labels = linear_case(n=4, h=3, v=20, ignored=(1,))
    h = hidden.requires_grad_()
    w = weight.requires_grad_()
    ref = lambda h, w: reference_linear_logprob_entropy(h, w, labels, 0.8)
    fused = lambda h, w: linear_logprob_entropy(h, w, labels, 0.8, impl="torch")
    assert torch.autograd.gradcheck(ref, (h, w))
    assert torch.autograd.gradcheck(fused, (h, w))


def run_logits(logits, labels, grads, temperature, impl, dtype=torch.float32):
    z = logits.detach().to(dtype).requires_grad_()
    logp, ent = logprob_entropy_from_logits(z, labels, temperature, impl=impl)
    sum((out * g.to(out.dtype)).sum() for out, g in zip((logp, ent), grads) if g is not None).backward()
    return logp.detach(), ent.detach(), z.grad


def check_logits(logits, labels, grads, temperature, impl, tol=TOL):
    expected = run_logits(logits, labels, grads, temperature, "reference", torch.float64)
    actual = run_logits(logits, labels, grads, temperature, impl)
    for name, a, e in zip(("logprob", "entropy", "d_logits"), actual, expected):
        assert not torch.isnan(a).any(), name
        assert_close(a, e, tol, name)
    return actual


def logits_case(n=9, v=600, seed=6):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[-1] = v - 1
    labels[2] = -100
    return logits, labels


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("which", ["both", "logprob", "entropy"])
def test_from_logits_matches_reference(impl, which, small_chunks):
    logits, labels = logits_case()
    g_lp, g_ent = upstream(len(labels), seed=7)
    grads = (g_lp if which != "entropy" else None, g_ent if which != "logprob" else None)
    logp, ent, dz = check_logits(logits, labels, grads, 0.6, impl)
    assert logp[2] == 0 and ent[2] == 0 and (dz[2] == 0).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_from_logits_peaky_negative_and_masked(impl):
    logits, labels = logits_case(n=6, v=300, seed=8)
    logits[0, 11] += 30.0  # peaky row
    logits[1] -= 250.0  # every logit below -100
    logits[3, :200] = -float("inf")  # masked vocabulary; label outside the mask
    labels[3] = 250
    logits[4, 100:] = -float("inf")  # masked tail, including the last tile
    labels[4] = 5
    logp, ent, dz = check_logits(logits, labels, upstream(6, seed=9), 1.0, impl)
    assert torch.isfinite(logp).all() and torch.isfinite(ent).all() and torch.isfinite(dz).all()
    assert (dz[3, :200] == 0).all()


def test_from_logits_no_grad_path_matches_reference():
    logits, labels = logits_case(n=4, v=1000, seed=10)
    logp, ent = logprob_entropy_from_logits(logits.float(), labels.int(), 1.5)
    ref_logp, ref_ent = reference_logprob_entropy_from_logits(logits, labels, 1.5)
    assert_close(logp, ref_logp, what="logprob")
    assert_close(ent, ref_ent, what="entropy")


def test_from_logits_gradcheck_float64(monkeypatch):
    monkeypatch.setattr(from_logits, "ROW_CHUNK_ELEMENTS", 2 * 12)  # row chunks of 2
    logits, labels = logits_case(n=5, v=12, seed=11)
    ref = lambda z: reference_logprob_entropy_from_logits(z, labels, 0.9)
    fused = lambda z: logprob_entropy_from_logits(z, labels, 0.9, impl="torch")
    assert torch.autograd.gradcheck(ref, (logits.requires_grad_(),))
    assert torch.autograd.gradcheck(fused, (logits,))


@pytest.mark.parametrize("bad", [600, 10_000, -1, -101])
def test_out_of_range_labels_raise(bad):
    hidden, weight, labels = linear_case()
    labels[0] = bad
    with pytest.raises(KernelInputError, match="labels must lie"):
        linear_logprob_entropy(hidden, weight, labels)
    with pytest.raises(KernelInputError, match="labels must lie"):
        logprob_entropy_from_logits(hidden @ weight.T, labels)


def test_bad_inputs_raise():
    hidden, weight, labels = linear_case()
    with pytest.raises(KernelInputError, match="temperature"):
        linear_logprob_entropy(hidden, weight, labels, temperature=0.0)
    with pytest.raises(KernelInputError, match="one floating dtype"):
        linear_logprob_entropy(hidden.float(), weight, labels)
    with pytest.raises(KernelInputError, match="hidden"):
        linear_logprob_entropy(hidden, weight.T, labels)
    with pytest.raises(KernelInputError, match="shape"):
        linear_logprob_entropy(hidden, weight, labels[:-1])
    with pytest.raises(KernelInputError, match="impl"):
        logprob_entropy_from_logits(hidden @ weight.T, labels, impl="cuda")


def test_dispatch_on_cpu(monkeypatch):
    cpu = torch.zeros(2, 2)
    assert _common.resolve_impl("auto", cpu) == "torch"
    assert _common.resolve_impl("reference", cpu) == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if _common.triton_available():
        with pytest.raises(KernelInputError, match="TRITON_INTERPRET"):
            _common.resolve_impl("triton", cpu)


def test_import_pulls_in_neither_triton_nor_transformers():
    code = (
        "import sys, arpo.kernels\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('triton', 'transformers', 'vllm')"
        " or (m.startswith('arpo.') and not m.startswith(('arpo.kernels', 'arpo.errors')))]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("impl", [TRITON_CASE])
def test_triton_cases_run_the_kernels_in_the_interpreter(impl):
    hidden, weight, labels = linear_case(n=8, h=16, v=300)
    linear_logprob_entropy(hidden.float(), weight.float(), labels, impl=impl)
    logprob_entropy_from_logits((hidden @ weight.T).float(), labels, impl=impl)
    from triton.runtime.interpreter import InterpretedFunction

    for module, kernel in (
        ("_linear_triton", "_linear_forward_kernel"),
        ("_from_logits_triton", "_forward_kernel"),
    ):
        assert isinstance(getattr(sys.modules[f"arpo.kernels.{module}"], kernel), InterpretedFunction)


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_backward_in_several_token_waves(impl, monkeypatch):
    """A workspace smaller than N x the narrowest chunk: tokens go in waves, dW sums them in fp32."""
    monkeypatch.setitem(linear.WORKSPACE_ELEMENTS, "cpu", 16 * 256)
    hidden, weight, labels = linear_case(n=50, h=20, v=600, seed=12)
    waves, chunks = linear.backward_plan(50, 600, 20, torch.device("cpu"), fp32_dw=False)
    assert len(waves) == 4 and len(chunks) == 3  # 16 rows x 256 columns per block
    check_linear(hidden, weight, labels, upstream(50, seed=13), 0.9, impl)


def test_backward_plan_floor_keeps_chunks_wide(monkeypatch):
    cuda = torch.device("cuda")
    waves, chunks = linear.backward_plan(8192, 152064, 4096, cuda, fp32_dw=False)
    assert (len(waves), len(chunks)) == (1, 38) and chunks[0] == (0, 4096)
    waves, chunks = linear.backward_plan(32768, 152064, 4096, cuda, fp32_dw=False)
    assert (len(waves), len(chunks)) == (4, 38)  # traffic grows with N: 4 waves, not 4x the chunks


@pytest.mark.skipif(not _common.triton_available(), reason="triton is not installed")
def test_split_count_fills_waves_and_bounds_resident_token_blocks():
    from arpo.kernels._linear_triton import split_count

    assert split_count(64, 152064, 132, 25) == 6  # 384 programs: 2.91 waves of 132
    assert split_count(5, 152064, 132, 25) == 26  # a 640-row block of the tree loss: 130 of 132 slots
    assert split_count(1, 152064, 132, 25) >= 66  # one token block: the splits fill the device
    assert split_count(3, 1100, 2, 1000) == 2  # the interpreter's model: 6 programs on 2 slots
    assert split_count(1, 200, 132, 25) == 1  # never more splits than SPLIT_COLUMNS blocks


def test_programs_per_sm_from_registers_and_shared_memory():
    from arpo.kernels._config import programs_per_sm

    h100 = (132, 65536, 2048, 233472, 50 * 2**20)
    assert programs_per_sm(255, 65536, 8, h100) == 1
    assert programs_per_sm(128, 65536, 8, h100) == 2
    assert programs_per_sm(64, 120 * 1024, 4, h100) == 1  # shared memory binds
    assert programs_per_sm(32, 0, 1, h100) == 32


@pytest.mark.parametrize("impl", [TRITON_CASE])
def test_tile_config_from_the_environment(impl, monkeypatch):
    from arpo.kernels import _config

    monkeypatch.setenv(_config.ENV, "BLOCK_N=16,BLOCK_V=32,BLOCK_H=16,num_warps=4,num_stages=2")
    assert _config.choose("forward", torch.float32) == _config.TileConfig(16, 32, 16, 4, 2)
    hidden, weight, labels = linear_case(n=20, h=24, v=100, seed=14)
    check_linear(hidden, weight, labels, upstream(20, seed=15), 1.0, impl)
    monkeypatch.setenv(_config.ENV, "BLOCK_N=16,BLOCK_V=32")
    with pytest.raises(KernelInputError, match="ARPO_TRITON_CONFIG"):
        linear_logprob_entropy(hidden.float(), weight.float(), labels, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_batched_shifted_call_equals_the_2d_call_on_shifted_tensors(impl):
    hidden, weight, _ = linear_case(n=3 * 9, h=24, v=300, seed=16)
    ids = torch.randint(0, 300, (3, 9), generator=torch.Generator().manual_seed(17))
    ids[1, 4] = -100
    batched = hidden.float().view(3, 9, 24).requires_grad_()
    logp, ent = linear_logprob_entropy(batched, weight.float(), ids, 0.8, impl=impl, shift=True)
    assert logp.shape == ent.shape == (3, 8)
    g = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(18))
    ((logp * g[0]).sum() + (ent * g[1]).sum()).backward()
    flat = batched.detach()[:, :-1].reshape(-1, 24).requires_grad_()
    flat_logp, flat_ent = linear_logprob_entropy(flat, weight.float(), ids[:, 1:].reshape(-1), 0.8, impl=impl)
    ((flat_logp * g[0].reshape(-1)).sum() + (flat_ent * g[1].reshape(-1)).sum()).backward()
    assert torch.equal(logp.reshape(-1), flat_logp) and torch.equal(ent.reshape(-1), flat_ent)
    assert torch.equal(batched.grad[:, :-1].reshape(-1, 24), flat.grad)
    assert (batched.grad[:, -1] == 0).all() and logp[1, 3] == 0  # no next token; an ignored label


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("softcap, with_bias", [(None, True), (2.5, False), (2.5, True)])
def test_softcap_and_bias_match_torch_in_value_and_gradient(impl, softcap, with_bias, small_chunks):
    hidden, weight, labels = linear_case(n=37, h=70, v=600, seed=19)
    weight = weight * 3  # logits well past the cap
    bias = torch.randn(600, generator=torch.Generator().manual_seed(20), dtype=torch.float64) * 2
    g_lp, g_ent = upstream(37, seed=21)

    def grads(dtype, fn):
        h, w = hidden.to(dtype).requires_grad_(), weight.to(dtype).requires_grad_()
        b = bias.to(dtype).requires_grad_() if with_bias else None
        logp, ent = fn(h, w, b)
        ((logp * g_lp.to(logp.dtype)).sum() + (ent * g_ent.to(ent.dtype)).sum()).backward()
        return [logp, ent, h.grad, w.grad] + ([b.grad] if with_bias else [])

    def torch_math(h, w, b):  # written out here, independent of the package
        logits = h @ w.T + (b if b is not None else 0)
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logp = torch.log_softmax(logits / 0.7, -1)
        active = labels != -100
        picked = logp.gather(1, labels.clamp(min=0)[:, None])[:, 0]
        return torch.where(active, picked, 0), torch.where(active, -(logp.exp() * logp).sum(-1), 0)

    fused = lambda h, w, b: linear_logprob_entropy(h, w, labels, 0.7, impl=impl, softcap=softcap, bias=b)
    names = ["logprob", "entropy", "d_hidden", "d_weight", "d_bias"]
    for name, a, e in zip(names, grads(torch.float32, fused), grads(torch.float64, torch_math)):
        assert_close(a.detach(), e.detach(), what=name)


def test_kernel_input_errors_are_value_errors():
    hidden, weight, labels = linear_case()
    with pytest.raises(ValueError, match="softcap"):
        linear_logprob_entropy(hidden, weight, labels, softcap=0.0)
    with pytest.raises(ValueError, match="bias"):
        linear_logprob_entropy(hidden, weight, labels, bias=torch.zeros(5))
    with pytest.raises(ValueError, match="labels must have shape"):
        linear_logprob_entropy(hidden.view(1, 37, 70), weight, labels)
