"""The C++ decode attention op alone against the bytes it must read (SmolLM2-135M shapes, CPU).

For each batch size, `--layers` separate caches (one per model layer, so a layer's blocks are not
still in cache from the previous call, as in a real step) hold `--context`-token sequences in
shuffled blocks; one timed pass calls the op once per layer. The baseline, alternating with it in
the same run, is the torch path the runner takes without the extension (gather each sequence's
blocks, one padded and masked SDPA call).

Bound, measured in the same run: the K and V bytes of the attended tokens divided by the read rate
of a large copy (bytes copied per second).

Run: `python -m benchmarks.decode_attention` (appends a section to RESULTS.md; `--no-write` prints only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from arpo.rollout.native import kv_ops
from arpo.rollout.native.paged_attention import AttentionChunk, AttentionMetadata, paged_attention
from benchmarks.common import append_result, machine
from benchmarks.decode_profile import copy_read_rate

HEADS, KV_HEADS, HEAD_DIM, BLOCK_SIZE = 9, 3, 64, 16  # SmolLM2-135M


def batch_inputs(batch: int, context: int, layers: int, dtype: torch.dtype):
    """Per-layer (k_cache, v_cache), the query and the metadata of one decode step."""
    g = torch.Generator().manual_seed(batch)
    width = -(-context // BLOCK_SIZE)
    blocks = batch * width
    caches = [
        tuple(torch.randn(blocks, BLOCK_SIZE, KV_HEADS, HEAD_DIM, generator=g).to(dtype) for _ in "kv")
        for _ in range(layers)
    ]
    tables = torch.randperm(blocks, generator=g).view(batch, width).tolist()
    chunks = [AttentionChunk(b, 1, context - (b % 3) * 5, tables[b]) for b in range(batch)]
    query = torch.randn(batch, HEADS, HEAD_DIM, generator=g).to(dtype)
    return caches, query, chunks


def time_batch(batch: int, args, dtype: torch.dtype) -> dict:
    caches, query, chunks = batch_inputs(batch, args.context, args.layers, dtype)
    native = AttentionMetadata(chunks, BLOCK_SIZE, query.device, use_flash=False)
    methods = {"op": lambda k, v: paged_attention(query, k, v, native)}
    methods["torch"] = lambda k, v: torch_path(query, k, v, native)
    times = {name: [] for name in methods}
    for _ in range(args.repeats + 1):  # the first pass warms up
        for name, run in methods.items():
            start = time.perf_counter()
            for k_cache, v_cache in caches:
                run(k_cache, v_cache)
            times[name].append((time.perf_counter() - start) / args.layers)
    attended = sum(c.ctx_len for c in chunks)
    kv_bytes = attended * KV_HEADS * HEAD_DIM * 2 * caches[0][0].element_size()
    return {name: statistics.median(t[1:]) for name, t in times.items()} | {"kv_bytes": kv_bytes}


def torch_path(query, k_cache, v_cache, meta):
    """The runner's path without the extension: hide it for one call."""
    saved = kv_ops.extension
    kv_ops.extension = lambda: None
    try:
        return paged_attention(query, k_cache, v_cache, meta)
    finally:
        kv_ops.extension = saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--context", type=int, default=256, help="cached tokens per sequence")
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = ap.parse_args(argv)
    if kv_ops.extension() is None:
        sys.exit("arpo: error: the csrc extension is not built (make setup)")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    read_rate = copy_read_rate()
    lines = [
        "| batch | op ms per layer | torch path ms per layer | op speed-up | K/V bound ms | op / bound |",
        "|---|---|---|---|---|---|",
    ]
    for batch in map(int, args.batches.split(",")):
        row = time_batch(batch, args, dtype)
        bound = row["kv_bytes"] / read_rate
        op, baseline = row["op"], row["torch"]
        cells = [batch, f"{op * 1e3:.3f}", f"{baseline * 1e3:.3f}", f"{baseline / op:.1f}x"]
        cells += [f"{bound * 1e3:.3f}", f"{op / bound:.2f}x"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
        print(lines[-1], flush=True)
    body = (
        f"{args.dtype}, {args.context}-token contexts, {HEADS} query heads over {KV_HEADS} kv heads of "
        f"dim {HEAD_DIM}, blocks of {BLOCK_SIZE}, {args.layers} layers' caches; median of "
        f"{args.repeats} passes, op and torch path alternating. A 256 MiB copy reads "
        f"{read_rate / 1e9:.1f} GB/s.\n\n" + "\n".join(lines) + "\n"
    )
    print(body)
    if not args.no_write:
        given = argv if argv is not None else sys.argv[1:]
        command = "python -m benchmarks.decode_attention " + " ".join(given)
        title = "Decode attention op against its KV-bytes bound (SmolLM2-135M shapes, cpu)"
        append_result(title, command.strip(), body, machine(args.threads), Path(args.results))


if __name__ == "__main__":
    main()
