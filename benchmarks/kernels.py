"""Fused log-prob + entropy over the LM head (`arpo.kernels.linear_logprob_entropy`) vs materialised logits.

    python -m benchmarks.kernels                        # the shape set of the device (CUDA if present)
    python -m benchmarks.kernels --quick                # one small shape (GPU: N=8192, H=4096, V=152064)
    python -m benchmarks.kernels --shapes 4096x576x49152,1024x576x49152 --reps 3
    python -m benchmarks.kernels --out DIR              # also write DIR/kernels.json
    python -m benchmarks.kernels --check                # GPU: also check the fused kernels at the first shape
    python -m benchmarks.kernels --plan                 # print shapes, methods and repetitions; run nothing
    python -m benchmarks.kernels --compile-stats        # any machine: sm_90a registers, spills, shared memory

For every shape and method: median time of forward (autograd on), backward, and both; TFLOP/s on the
nominal 2NHV (forward), 6NHV (backward: logit recompute + two GEMMs) and 8NHV (both) for every method;
peak extra memory of forward and of forward + backward over the inputs.

CPU: methods `chunked` (impl="torch"), `chunked-tree-loss` (`linear_tree_loss`, impl="torch": the
gradient made in the forward, three GEMMs where `chunked` does four) and `materialised`
(impl="reference": fp32 [N, V] logits and log_softmax). Memory is the peak resident set size (VmHWM,
reset through /proc/self/clear_refs) minus the RSS just before the call, each method and shape in a
fresh worker process so that no allocator cache from an earlier case hides allocations. Times
alternate the methods every repetition, so that the load of a shared machine falls on all alike. Also
times one sampler decode step (`logprob_entropy_from_logits` on [B, V] logits, no grad) against the
materialised reference.

GPU (every method in bf16): `fused` (impl="triton"), `fused-tree-loss` (`linear_tree_loss`, whose
forward makes dh and dW in three GEMMs and whose backward only scales them: its forward time holds the
whole work; per-token inputs at token-mean scale), `fused-tree-loss-1gib` (the same with a 1 GiB
logits workspace instead of 192 MiB: fewer row blocks, less dW traffic), `cublas-blocked` (that
path's three GEMMs alone in its row blocks: what its elementwise work and small kernels add to them),
`eager-bf16` (bf16 GEMM to bf16 [N, V] logits, then fp32 log-softmax and entropy), `compiled`
(`torch.compile` of eager-bf16), `cublas-floor` (the
three bf16 GEMMs alone: logits forward, `dz @ W` and `dz.T @ h` backward, no softmax: what no
kernel can beat by much) and, where installed, cut-cross-entropy and Liger's fused linear cross
entropy (log-prob only, so their backward receives g_logp only). Memory is
`torch.cuda.max_memory_allocated` minus the allocation before the call. `--check` compares, at the first
shape, each fused path with an fp32 computation on the same bf16 inputs (TF32 off), at token-mean
scale: values (log-prob, entropy, loss) within 1e-4 relative (to max(1, |reference|)), each token's dh
and each vocabulary row's dW within 8e-3 relative (bf16 dz and bf16 gradients); the tree loss's dW,
summed in bf16 over its row blocks, within 1.6e-2.
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from arpo.kernels import (
    linear_logprob_entropy,
    linear_loss,
    linear_tree_loss,
    logprob_entropy_from_logits,
    reference_logprob_entropy_from_logits,
)

from benchmarks.common import append_result, machine

CPU_SHAPES = [(1024, 576, 49152), (4096, 576, 49152)]
CPU_QUICK = [(512, 128, 8192)]
GPU_QUICK = [(8192, 4096, 152064)]
# The headline shape first: figures are saved after every case, so a time limit keeps the important ones.
GPU_SHAPES = GPU_QUICK + [
    (n, h, v)
    for n in (4096, 8192, 16384)
    for h, v in ((4096, 152064), (3584, 152064), (4096, 128256))
    if (n, h, v) not in GPU_QUICK
]
DECODE_BATCHES = (1, 8, 64)
DECODE_VOCAB = 49152


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    try:
        shapes = [tuple(int(x) for x in part.split("x")) for part in text.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(shape) != 3 or min(shape) < 1 for shape in shapes):
        raise SystemExit(f"--shapes wants NxHxV[,NxHxV...], got {text!r}")
    return shapes


# ---------------------------------------------------------------- methods: (hidden, weight, labels) -> outs


def materialised(hidden, weight, labels):
    """Eager torch with fp32 [N, V] logits (the CPU baseline)."""
    logits = hidden.float() @ weight.float().T
    return reference_logprob_entropy_from_logits(logits, labels)


def eager_bf16(hidden, weight, labels):
    """What training code does without a fused kernel: a bf16 GEMM to [N, V] logits, fp32 softmax."""
    return reference_logprob_entropy_from_logits(hidden @ weight.T, labels)


class CublasFloor(torch.autograd.Function):
    """Only the three GEMMs: logits = h @ W.T; backward dh = dz @ W, dW = dz.T @ h with the logits
    buffer standing in for dz (its values do not matter for the time)."""

    @staticmethod
    def forward(ctx, hidden, weight):
        logits = hidden @ weight.T
        ctx.save_for_backward(hidden, weight, logits)
        return logits[:, 0].float()

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, dz = ctx.saved_tensors
        return dz @ weight, dz.T @ hidden


def cublas_floor(hidden, weight, labels):
    return (CublasFloor.apply(hidden, weight),)


class CublasBlocked(torch.autograd.Function):
    """The GEMMs of the tree loss's gradient-in-forward path alone, in its row blocks (CUDA): a block's
    logits in the inputs' dtype (cuBLAS standing in for the Triton pass that keeps them), then `dz @ W`
    and `dW += dz.T @ h` with the same buffer standing in for dz."""

    @staticmethod
    def forward(ctx, hidden, weight):
        n, vocab = hidden.shape[0], weight.shape[0]
        rows = linear_loss.block_rows(n, linear_loss.row_bytes(vocab, hidden.dtype, "triton"), hidden.device)
        workspace = torch.empty((rows, vocab), dtype=hidden.dtype, device=hidden.device)
        dh, dw = torch.empty_like(hidden), torch.empty_like(weight)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            logits = dz = workspace[: r1 - r0]
            torch.mm(hidden[r0:r1], weight.T, out=logits)
            torch.mm(dz, weight, out=dh[r0:r1])
            torch.addmm(dw, dz.T, hidden[r0:r1], beta=1 if r0 else 0, out=dw)
        ctx.grads = dh, dw
        return workspace[0, :1].clone()

    @staticmethod
    def backward(ctx, grad):
        return ctx.grads


def cublas_blocked(hidden, weight, labels):
    return (CublasBlocked.apply(hidden, weight),)


def with_workspace(fn, nbytes: int):
    """`fn` with the gradient-in-forward path's CUDA workspace set to `nbytes` during the call."""

    def call(*args):
        saved = linear_loss.WORKSPACE_BYTES["cuda"]
        linear_loss.WORKSPACE_BYTES["cuda"] = nbytes
        try:
            return fn(*args)
        finally:
            linear_loss.WORKSPACE_BYTES["cuda"] = saved

    return call


def fused(impl):
    return lambda hidden, weight, labels: linear_logprob_entropy(hidden, weight, labels, impl=impl)


TREE_LOSS_OPTIONS = {"kl_coef": 0.01, "entropy_coef": 0.001}


def tree_inputs(hidden, weight, labels):
    """(old_logprob, s_plus, s_minus, w, ref_logprob) at token-mean scale, old / ref near the policy's."""
    n = hidden.shape[0]
    gen = torch.Generator(device=hidden.device).manual_seed(2)
    noise = lambda scale: torch.randn(n, generator=gen, device=hidden.device) * scale
    with torch.no_grad():
        logp, _ = linear_logprob_entropy(hidden, weight, labels)
    advantage = noise(1.0) / n
    w = torch.full_like(logp, 1.0 / n)
    return logp + noise(0.3), advantage.clamp(min=0), advantage.clamp(max=0), w, logp + noise(0.1)


def fused_tree_loss(tree, impl="triton"):
    """The tree loss as a benchmark method: (loss,) of `linear_tree_loss` with fixed per-token inputs."""
    return lambda h, w, y: (linear_tree_loss(h, w, y, *tree, impl=impl, **TREE_LOSS_OPTIONS)[0],)


def competitor_methods() -> dict:
    """Installed third-party fused kernels (log-prob only); say loudly which are missing."""
    found = {}
    try:
        from cut_cross_entropy import linear_cross_entropy

        found["cut-cross-entropy"] = lambda h, w, y: (-linear_cross_entropy(h, w, y, reduction="none"),)
    except ImportError:
        print(
            "!! cut-cross-entropy is not installed: skipping it (pip install cut-cross-entropy)", flush=True
        )
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss(reduction="none")
        found["liger-flce"] = lambda h, w, y: (-liger(w, h, y),)
    except ImportError:
        print("!! liger-kernel is not installed: skipping it (pip install liger-kernel)", flush=True)
    return found


# ---------------------------------------------------------------- measuring


def make_inputs(n, h, v, dtype, device, seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, device=device, dtype=dtype)
    weight = torch.randn(v, h, generator=gen, device=device, dtype=dtype).mul_(h**-0.5)
    labels = torch.randint(0, v, (n,), generator=gen, device=device)
    return hidden, weight, labels


def rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


class Meter:
    """Peak extra memory (MiB) of a phase: CUDA allocator stats, else resident set size."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def start(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = rss_kib("VmRSS") * 1024

    def peak_mib(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (rss_kib("VmHWM") * 1024 - self.base) / 2**20


def now(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def one_step(fn, hidden, weight, labels, device):
    """(forward s, backward s) of one forward + backward with random upstream gradients."""
    h = hidden.detach().requires_grad_()
    w = weight.detach().requires_grad_()
    t0 = now(device)
    outs = fn(h, w, labels)
    t1 = now(device)
    grads = [torch.randn_like(o) for o in outs]
    t1b = now(device)
    torch.autograd.backward(outs, grads)
    t2 = now(device)
    return t1 - t0, t2 - t1b


def peak_memory(fn, inputs, device) -> dict:
    """Peak extra MiB of the first forward and forward + backward (unit upstream gradients)."""
    hidden, weight, labels = inputs
    h = hidden.detach().requires_grad_()
    w = weight.detach().requires_grad_()
    meter = Meter(device)
    meter.start()
    outs = fn(h, w, labels)
    fwd_mib = meter.peak_mib()
    torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    return {"fwd_peak_mib": fwd_mib, "both_peak_mib": meter.peak_mib()}


def timings(steps: list[tuple[float, float]], shape) -> dict:
    """Medians and TFLOP/s of (forward s, backward s) pairs on the nominal 2NHV / 6NHV / 8NHV."""
    n, h, v = shape
    flop = 2 * n * h * v
    fwd = statistics.median(f for f, _ in steps)
    bwd = statistics.median(b for _, b in steps)
    both = statistics.median(f + b for f, b in steps)
    return {
        "fwd_ms": 1e3 * fwd,
        "bwd_ms": 1e3 * bwd,
        "both_ms": 1e3 * both,
        "fwd_tflops": flop / fwd / 1e12,
        "bwd_tflops": 3 * flop / bwd / 1e12,
        "both_tflops": 4 * flop / both / 1e12,
    }


CPU_METHODS = ("chunked", "chunked-tree-loss", "materialised")


def cpu_methods(inputs) -> dict:
    """The CPU methods on these inputs (the tree loss's per-token inputs come from them)."""
    tree_loss = fused_tree_loss(tree_inputs(*inputs), impl="torch")
    return {"chunked": fused("torch"), "chunked-tree-loss": tree_loss, "materialised": materialised}


def cpu_worker(spec: dict) -> dict:
    inputs = make_inputs(*spec["shape"], torch.float32, "cpu")
    return peak_memory(cpu_methods(inputs)[spec["method"]], inputs, "cpu")


def run_cpu(shapes, reps, report) -> None:
    """Memory in a fresh worker process per method; times here, alternating the methods every
    repetition so that the load of a shared machine falls on both alike."""
    for shape in shapes:
        memory = {}
        for method in CPU_METHODS:
            spec = {"method": method, "shape": shape}
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.kernels", "--worker", json.dumps(spec)],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            if proc.returncode != 0:
                raise SystemExit(f"worker {spec} failed:\n{proc.stderr}")
            memory[method] = json.loads(proc.stdout.splitlines()[-1])
        inputs = make_inputs(*shape, torch.float32, "cpu")
        methods = cpu_methods(inputs)
        steps = {method: [] for method in CPU_METHODS}
        for _ in range(reps):
            for method, fn in methods.items():
                steps[method].append(one_step(fn, *inputs, "cpu"))
        for method in CPU_METHODS:
            report.add(
                {"method": method, "shape": list(shape), **timings(steps[method], shape), **memory[method]}
            )


def run_decode_steps(report, reps=50) -> None:
    """One sampler step: log-prob + entropy of [B, V] logits, no grad (min and median over reps).

    One intra-op thread: on a loaded machine a second thread that is descheduled stalls every small op
    at its barrier, which measures the neighbours, not the kernel."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    methods = {"chunked": logprob_entropy_from_logits, "materialised": reference_logprob_entropy_from_logits}
    for b in DECODE_BATCHES:
        logits = torch.randn(b, DECODE_VOCAB)
        labels = torch.randint(0, DECODE_VOCAB, (b,))
        times = {method: [] for method in methods}
        for rep in range(reps + 1):  # the first round warms up
            for method, fn in methods.items():
                t0 = time.perf_counter()
                fn(logits, labels, 0.7)
                if rep:
                    times[method].append(time.perf_counter() - t0)
        for method, ts in times.items():
            report.add_decode(
                {
                    "method": method,
                    "batch": b,
                    "vocab": DECODE_VOCAB,
                    "min_ms": 1e3 * min(ts),
                    "median_ms": 1e3 * statistics.median(ts),
                }
            )
    torch.set_num_threads(threads)


GPU_METHOD_NAMES = (
    "fused-tree-loss",
    "fused-tree-loss-1gib",
    "cublas-blocked",
    "fused",
    "eager-bf16",
    "compiled",
    "cublas-floor",
)


def gpu_methods() -> dict:
    """The methods of every shape (`fused-tree-loss` needs the shape's per-token inputs: `run_gpu`)."""
    methods = {
        "fused": fused("triton"),
        "eager-bf16": eager_bf16,
        "compiled": torch.compile(eager_bf16),
        "cublas-floor": cublas_floor,
    }
    methods.update(competitor_methods())
    return methods


def run_gpu(shapes, reps, report, check: bool) -> None:
    base_methods = gpu_methods()
    for index, shape in enumerate(shapes):
        inputs = make_inputs(*shape, torch.bfloat16, "cuda")
        tree_loss = fused_tree_loss(tree_inputs(*inputs))
        methods = {
            "fused-tree-loss": tree_loss,
            "fused-tree-loss-1gib": with_workspace(tree_loss, 2**30),
            "cublas-blocked": cublas_blocked,
            **base_methods,
        }
        for method, fn in methods.items():
            try:
                one_step(fn, *inputs, "cuda")  # compile / autotune outside the measured runs
                memory = peak_memory(fn, inputs, "cuda")
                result = {**timings([one_step(fn, *inputs, "cuda") for _ in range(reps)], shape), **memory}
            except torch.cuda.OutOfMemoryError:
                result = {"error": "out of memory"}
            except Exception as exc:  # a competitor's API drift must not stop the run
                result = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            torch.cuda.empty_cache()
            report.add({"method": method, "shape": list(shape), **result})
        if check and index == 0:
            report.add_check(correctness(inputs))
            torch.cuda.empty_cache()
            report.add_check(tree_loss_correctness(inputs))
            torch.cuda.empty_cache()


def _worst_row_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max over rows of ||actual - expected|| / ||expected|| (rows with a zero reference: ||actual||)."""
    err = (actual.float() - expected).norm(dim=1)
    norm = expected.norm(dim=1)
    return torch.where(norm > 0, err / norm.clamp(min=1e-30), err).max().item()


def _max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(1, |expected|)."""
    return ((actual.float() - expected.float()).abs() / expected.float().abs().clamp(min=1.0)).max().item()


@contextlib.contextmanager
def exact_fp32_matmul():
    """fp32 references with fp32 products (TF32 off) for the duration."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _verdict(check: dict, dw_tol: float) -> dict:
    values = [v for k, v in check.items() if k.endswith("max_rel_error")]
    dh_ok = check["d_hidden_worst_row_rel_error"] <= 8e-3
    grads_ok = dh_ok and check["d_weight_worst_row_rel_error"] <= dw_tol
    check["verdict"] = "PASS" if max(values) <= 1e-4 and grads_ok else "FAIL"
    return check


def correctness(inputs) -> dict:
    """The fused kernel against fp32 math on the same bf16 inputs, token-mean upstream gradients."""
    hidden, weight, labels = inputs
    n = hidden.shape[0]
    grads = torch.randn(2, n, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1)) / n
    results = []
    with exact_fp32_matmul():
        for fn, cast in ((fused("triton"), torch.bfloat16), (materialised, torch.float32)):
            h = hidden.detach().to(cast).requires_grad_()
            w = weight.detach().to(cast).requires_grad_()
            logp, ent = fn(h, w, labels)
            torch.autograd.backward((logp, ent), (grads[0], grads[1]))
            results.append((logp.detach(), ent.detach(), h.grad, w.grad))
            del h, w
            torch.cuda.empty_cache()
    (logp, ent, dh, dw), (ref_logp, ref_ent, ref_dh, ref_dw) = results
    check = {
        "kernel": "linear_logprob_entropy",
        "shape": list(hidden.shape) + [weight.shape[0]],
        "logprob_max_rel_error": _max_rel_error(logp, ref_logp),
        "entropy_max_rel_error": _max_rel_error(ent, ref_ent),
        "d_hidden_worst_row_rel_error": _worst_row_error(dh, ref_dh),
        "d_weight_worst_row_rel_error": _worst_row_error(dw, ref_dw),
    }
    return _verdict(check, dw_tol=8e-3)


def tree_loss_correctness(inputs) -> dict:
    """The tree loss's gradient-in-forward path against the unfused fp32 loss on the same bf16 inputs."""
    hidden, weight, labels = inputs
    tree = tree_inputs(*inputs)
    results = []
    with exact_fp32_matmul():
        for impl, cast in (("triton", torch.bfloat16), ("reference", torch.float32)):
            h = hidden.detach().to(cast).requires_grad_()
            w = weight.detach().to(cast).requires_grad_()
            loss, aux = linear_tree_loss(h, w, labels, *tree, impl=impl, **TREE_LOSS_OPTIONS)
            loss.backward()
            results.append((loss.detach(), aux["logprob"], aux["entropy"], h.grad, w.grad))
            del h, w, loss, aux
            torch.cuda.empty_cache()
    (loss, logp, ent, dh, dw), (ref_loss, ref_logp, ref_ent, ref_dh, ref_dw) = results
    check = {
        "kernel": "linear_tree_loss",
        "shape": list(hidden.shape) + [weight.shape[0]],
        "loss_max_rel_error": _max_rel_error(loss, ref_loss),
        "logprob_max_rel_error": _max_rel_error(logp, ref_logp),
        "entropy_max_rel_error": _max_rel_error(ent, ref_ent),
        "d_hidden_worst_row_rel_error": _worst_row_error(dh, ref_dh),
        "d_weight_worst_row_rel_error": _worst_row_error(dw, ref_dw),
    }
    return _verdict(check, dw_tol=1.6e-2)


# ---------------------------------------------------------------- reporting

COLUMNS = (
    "fwd_ms",
    "bwd_ms",
    "both_ms",
    "fwd_tflops",
    "bwd_tflops",
    "both_tflops",
    "fwd_peak_mib",
    "both_peak_mib",
)


def table_rows(records):
    yield "| N x H x V | method | " + " | ".join(COLUMNS) + " |"
    yield "|" + "---|" * (len(COLUMNS) + 2)
    for r in records:
        cells = (
            [r["error"]] + [""] * (len(COLUMNS) - 1)
            if "error" in r
            else [f"{r[c]:.3f}" if "tflops" in c else f"{r[c]:.1f}" for c in COLUMNS]
        )
        yield f"| {'x'.join(map(str, r['shape']))} | {r['method']} | " + " | ".join(cells) + " |"


class Report:
    """Collects the figures, printing each and rewriting DIR/kernels.json after each when --out is given."""

    def __init__(self, device: str, command: str, out: Path | None):
        self.data = {"machine": machine(), "device": device, "command": command, "records": [], "decode": []}
        self.out = out
        print(f"{self.data['machine']}\n" + "\n".join(table_rows([])), flush=True)

    def add(self, record: dict) -> None:
        self.data["records"].append(record)
        print(list(table_rows([record]))[-1], flush=True)
        self.save()

    def add_check(self, check: dict) -> None:
        self.data.setdefault("checks", []).append(check)
        print(
            "correctness "
            + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in check.items()),
            flush=True,
        )
        self.save()

    def add_decode(self, record: dict) -> None:
        self.data["decode"].append(record)
        print(
            f"decode B={record['batch']:<3} {record['method']:13s} min {record['min_ms']:.3f} ms  "
            f"median {record['median_ms']:.3f} ms",
            flush=True,
        )
        self.save()

    def save(self) -> None:
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "kernels.json").write_text(json.dumps(self.data, indent=2))

    def append_to_results(self) -> None:
        d = self.data
        lines = list(table_rows(d["records"]))
        if d["decode"]:
            lines += [
                "",
                "Sampler decode step (`logprob_entropy_from_logits`, fp32 [B, V] logits, no grad, 1 thread):",
                "",
                "| B x V | method | min ms | median ms |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r['batch']}x{r['vocab']} | {r['method']} | {r['min_ms']:.3f} | {r['median_ms']:.3f} |"
                for r in d["decode"]
            ]
        title = f"Fused log-prob + entropy kernels ({d['device']})"
        append_result(title, d["command"], "\n".join(lines), d["machine"])


def print_compile_stats() -> None:
    """The pinned configs compiled for sm_90a, as a markdown table (for RESULTS.md)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-m", "arpo.kernels._aot"], capture_output=True, text=True, env=env, check=True
    )
    print("| kernel | dtype | pinned config | registers | spill stores / loads (B) | shared memory (KiB) |")
    print("|---|---|---|---|---|---|")
    for line in proc.stdout.splitlines():
        s = json.loads(line)
        cells = [s["kernel"], s["dtype"], s["config"], s["registers"]]
        cells += [f"{s['spill_stores']} / {s['spill_loads']}", f"{s['shared_bytes'] / 1024:.0f}"]
        print("| " + " | ".join(map(str, cells)) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape")
    parser.add_argument("--shapes", help="NxHxV[,NxHxV...] instead of the device's shape set")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3 CPU, 10 GPU)")
    parser.add_argument("--out", type=Path, help="also write the figures as DIR/kernels.json")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--check", action="store_true", help="GPU: check the fused kernel at the first shape")
    parser.add_argument("--plan", action="store_true", help="print shapes, methods and reps; run nothing")
    parser.add_argument("--compile-stats", action="store_true", help="sm_90a compile figures (no GPU needed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(cpu_worker(json.loads(args.worker))))
        return
    if args.compile_stats:
        print_compile_stats()
        return
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available() and not args.plan:
        raise SystemExit("--device cuda: no CUDA device here")
    shapes = (
        parse_shapes(args.shapes)
        if args.shapes
        else {
            ("cpu", False): CPU_SHAPES,
            ("cpu", True): CPU_QUICK,
            ("cuda", False): GPU_SHAPES,
            ("cuda", True): GPU_QUICK,
        }[device, args.quick]
    )
    reps = args.reps or (3 if device == "cpu" else 10)
    if args.plan:
        names = list(CPU_METHODS) if device == "cpu" else [*GPU_METHOD_NAMES]
        print(f"plan: device {device}, {reps} timed reps after one warm-up, methods {', '.join(names)}")
        print("plan: shapes " + ", ".join("x".join(map(str, shape)) for shape in shapes))
        print(
            f"plan: correctness check at {'x'.join(map(str, shapes[0]))}: {args.check and device == 'cuda'}"
            " (linear_logprob_entropy, linear_tree_loss)"
        )
        return
    command = "python -m benchmarks.kernels " + " ".join(argv if argv is not None else sys.argv[1:])
    report = Report(device, command.strip(), args.out)
    if device == "cpu":
        run_cpu(shapes, reps, report)
        run_decode_steps(report)
    else:
        run_gpu(shapes, reps, report, args.check)
    if not args.no_append:
        report.append_to_results()


if __name__ == "__main__":
    main()
