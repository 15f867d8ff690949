"""Where a native decode step's time goes, against the machine's own limits (SmolLM2-135M, CPU).

For each batch size, `--batch` sequences with `--context`-token prompts are prefilled, then
`--steps` decode steps are timed. The eager step is split into parts by wrapping the runner's
building blocks with timers: Python scheduling (the engine's `_schedule`), step metadata (index
tensors, rope tables), the linear layers of the decoder, the LM head, attention, KV writes, norms
and rope, sampling (token draw + full-vocabulary log-prob and entropy); "other" is the rest
(embedding, residual adds, events). The compiled step, where available, is timed as a whole.

Bounds, measured in the same run: the weight-read bound is the bytes of weights a step reads divided
by the read rate of a large copy (bytes copied per second); the GEMM bound is the step's linear-layer
FLOPs divided by the rate of one large fp32 matmul.

Run: `python -m benchmarks.decode_profile` (appends a section to RESULTS.md; `--no-write` prints only).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from arpo.config.rollout import SamplerConfig
from arpo.rollout.interface import SamplingParams
from arpo.rollout.native import engine as engine_module
from arpo.rollout.native import model_runner
from arpo.rollout.native.engine import NativeEngine
from benchmarks.common import append_result, machine
from benchmarks.rollout import load_smollm2

PARTS = ("schedule", "metadata", "linear", "lm_head", "attention", "kv_write", "norm_rope", "sampling")


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_read_rate(mib: int = 256, repeats: int = 7) -> float:
    """Bytes read per second by a large tensor copy (each byte read is also written once)."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    return src.numel() * 4 / median_seconds(lambda: dst.copy_(src), repeats)


def gemm_rate(size: int = 1024, repeats: int = 5, dtype=torch.float32) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats)


def weight_bytes(model) -> int:
    """Bytes a decode step reads: every parameter once (a tied embedding is read as the LM head)."""
    seen = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
    return sum(seen.values())


def linear_flops_per_token(model) -> int:
    return 2 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


class PartTimer:
    """Wraps named module attributes with timers; `totals[part]` accumulates seconds."""

    def __init__(self):
        self.totals = defaultdict(float)
        self.patched = []

    def wrap(self, owner, attr: str, part):
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                name = part(*args) if callable(part) else part
                self.totals[name] += time.perf_counter() - start

        setattr(owner, attr, timed)
        self.patched.append((owner, attr, original))

    def restore(self):
        for owner, attr, original in reversed(self.patched):
            setattr(owner, attr, original)
        self.patched.clear()


def instrument(engine, vocab: int) -> PartTimer:
    timer = PartTimer()
    timer.wrap(engine, "_schedule", "schedule")
    timer.wrap(engine.runner, "step_metadata", "metadata")
    timer.wrap(
        model_runner,
        "linear",
        lambda x, weight, bias=None: "lm_head" if weight.shape[0] == vocab else "linear",
    )
    timer.wrap(model_runner, "paged_attention", "attention")
    timer.wrap(model_runner, "write_kv", "kv_write")
    for fn in ("rms_norm", "apply_rope"):
        timer.wrap(model_runner, fn, "norm_rope")
    timer.wrap(engine_module, "sample_next", "sampling")
    return timer


def batch_engine(model, tok, batch: int, context: int, compiled: bool) -> NativeEngine:
    tokens = (context + 64) * batch + 256
    cfg = SamplerConfig(block_size=16, kv_cache_tokens=tokens, max_batch_seqs=batch, compile_decode=compiled)
    engine = NativeEngine(model, tok, cfg)
    g = torch.Generator().manual_seed(batch)
    for i in range(batch):
        prompt = torch.randint(10, 40000, (context,), generator=g).tolist()
        engine.add(prompt, SamplingParams(temperature=1.0, max_new_tokens=10_000, seed=i))
    while engine.stats["sampled_tokens"] < batch:  # prefill
        engine.step()
    for _ in range(3):  # warm-up (and compilation) outside the timed steps
        engine.step()
    return engine


def profile_batch(model, tok, batch: int, args) -> dict:
    """Compiled steps first (their warm-up compiles), then eager steps of the same engine, timed by part."""
    vocab = model.get_output_embeddings().weight.shape[0]
    engine = batch_engine(model, tok, batch, args.context, compiled=True)
    row = {"compiled": median_seconds(engine.step, args.steps)}
    engine.runner.compiled = None  # the same engine, eager from here on
    timer = instrument(engine, vocab)
    steps = []
    try:
        for _ in range(args.steps):
            start = time.perf_counter()
            engine.step()
            steps.append(time.perf_counter() - start)
    finally:
        timer.restore()
    row |= {part: timer.totals[part] / args.steps for part in PARTS}
    row["eager"] = statistics.median(steps)
    row["other"] = max(0.0, sum(steps) / args.steps - sum(row[p] for p in PARTS))
    return row


def report(rows: dict, bounds: dict, args) -> str:
    ms = lambda s: f"{s * 1e3:.1f}"  # noqa: E731
    head = (
        "| batch | eager step ms | " + " | ".join(PARTS) + " | other | compiled step ms | tok/s (compiled) |"
    )
    head += " weight-read bound ms | compiled / weight bound | GEMM bound ms | compiled / GEMM bound |"
    lines = [head, "|" + "---|" * (len(PARTS) + 10)]
    for batch, r in rows.items():
        gemm = bounds["linear_flops_per_token"] * batch / bounds["gemm_flops"]
        cells = [batch, ms(r["eager"])] + [ms(r[p]) for p in PARTS] + [ms(r["other"]), ms(r["compiled"])]
        cells += [f"{batch / r['compiled']:.0f}", ms(bounds["weight_read_s"])]
        cells += [f"{r['compiled'] / bounds['weight_read_s']:.2f}x", ms(gemm), f"{r['compiled'] / gemm:.2f}x"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,16,64")
    ap.add_argument("--context", type=int, default=256, help="prompt tokens per sequence")
    ap.add_argument("--steps", type=int, default=10, help="timed decode steps per batch size")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, tok = load_smollm2()
    read_rate, flops = copy_read_rate(), gemm_rate()
    bounds = {
        "weight_bytes": weight_bytes(model),
        "read_rate": read_rate,
        "weight_read_s": weight_bytes(model) / read_rate,
        "gemm_flops": flops,
        "linear_flops_per_token": linear_flops_per_token(model),
    }
    rows = {}
    for batch in map(int, args.batches.split(",")):
        rows[batch] = profile_batch(model, tok, batch, args)
        print(batch, {k: round(v * 1e3, 1) for k, v in rows[batch].items()}, flush=True)
    table = report(rows, bounds, args)
    body = (
        f"Bounds (same run): weights read per step {bounds['weight_bytes'] / 1e6:.0f} MB; a "
        f"256 MiB copy reads {read_rate / 1e9:.1f} GB/s, so one weight read takes "
        f"{bounds['weight_read_s'] * 1e3:.1f} ms; a 1024^3 fp32 matmul runs at {flops / 1e9:.0f} GFLOP/s "
        f"and a token needs {bounds['linear_flops_per_token'] / 1e6:.0f} MFLOP of linear layers.\n"
        f"Each batch size: {args.context}-token contexts, median of {args.steps} decode steps (parts: "
        "mean per step, eager).\n\n"
        f"{table}\n"
    )
    print(body)
    if not args.no_write:
        command = "python -m benchmarks.decode_profile " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        title = "Decode step profile and bounds (SmolLM2-135M fp32, cpu)"
        append_result(title, command.strip(), body, machine(args.threads), Path(args.results))


if __name__ == "__main__":
    main()
