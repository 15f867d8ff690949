"""End-to-end CUDA smoke test: the native sampler and one tree-loss training step on a tiny bf16 model.

    python -m benchmarks.gpu_smoke            # on a CUDA machine (torch, triton, transformers only)
    python -m benchmarks.gpu_smoke --plan     # print what it would do; runs nothing
    python -m benchmarks.gpu_smoke --device cpu   # the same in fp32 on the CPU (tests run this)

1. Sampler: a random tiny Qwen3 in bf16 on the GPU generates 24 tokens for four prompts through the
   native paged engine, forks one sequence into two branches midway, and every token's log-prob and
   entropy must be finite (entropies within [0, log V]).
2. Training: four random rollout trees (`arpo.algo.synthetic`) with random rewards go through
   `policy_loss_backward` with the tree loss (the fused Triton kernel on CUDA) and one AdamW step; the
   loss must be finite, gradients finite and non-zero, and the weights must move.
Prints one `smoke: PASS` / `smoke: FAIL ...` line per part and exits non-zero on any failure.
"""

import argparse
import math
import random
import sys
import time

import torch

PROMPTS = 4
NEW_TOKENS = 24


def sampler_smoke(model, tok) -> str:
    from arpo.config.rollout import SamplerConfig
    from arpo.rollout.interface import SamplingParams
    from arpo.rollout.native.engine import NativeEngine

    engine = NativeEngine(model, tok, SamplerConfig(block_size=16, num_blocks=256))
    gen = torch.Generator().manual_seed(0)
    params = SamplingParams(temperature=1.0, max_new_tokens=NEW_TOKENS, seed=1)
    ids = [
        engine.add(torch.randint(3, 400, (5 + 7 * i,), generator=gen).tolist(), params)
        for i in range(PROMPTS)
    ]
    events = []
    for _ in range(NEW_TOKENS // 2):
        events += engine.step()
    children = engine.fork(ids[0], 2, seeds=[2, 3])
    while engine.has_runnable():
        events += engine.step()
    log_v = math.log(model.config.vocab_size)
    bad = [e for e in events if not (math.isfinite(e.logprob) and -1e-3 <= e.entropy <= log_v + 1e-3)]
    if bad:
        return f"FAIL {len(bad)} of {len(events)} tokens with non-finite log-prob or entropy out of range"
    lengths = [len(engine.token_ids(i)) for i in ids + children]
    return f"PASS {len(events)} tokens, {len(children)} forks, sequence lengths {lengths}"


def training_smoke(model) -> str:
    from arpo.algo.policy import policy_loss_backward
    from arpo.algo.synthetic import synthetic_group
    from arpo.config.algo import AlgoConfig

    rng = random.Random(0)
    groups = [synthetic_group(rng, g, model.config.vocab_size, n_traj=6) for g in range(PROMPTS)]
    for group in groups:
        for traj in group.trajectories:
            traj.reward = rng.random()
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    metrics = policy_loss_backward(model, groups, AlgoConfig(loss_impl="tree"))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    finite = all(torch.isfinite(g).all() for g in grads)
    grad_norm = torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])).item()
    optimizer.step()
    moved = any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
    if not (math.isfinite(metrics["loss"]) and finite and grad_norm > 0 and moved):
        verdict = f"loss {metrics['loss']}, finite grads {finite}, grad norm {grad_norm}, moved {moved}"
        return f"FAIL {verdict}"
    return f"PASS loss {metrics['loss']:.4g}, grad norm {grad_norm:.3g}, {len(grads)} parameters updated"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="print the steps; run nothing")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: fp32 on the CPU")
    args = parser.parse_args(argv)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    if args.plan:
        print(f"smoke plan: tiny qwen3 {dtype} on {args.device}; sampler: {PROMPTS} prompts x {NEW_TOKENS}")
        print(f"smoke plan: tokens + 1 fork; training: one tree-loss step over {PROMPTS} trees + AdamW")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("smoke: FAIL no CUDA device", flush=True)
        return 1
    from arpo.models.tiny import tiny_model

    model, tok = tiny_model("qwen3", seed=0, dtype=dtype)
    model = model.to(args.device)
    failed = False
    for name, part in (
        ("sampler", lambda: sampler_smoke(model, tok)),
        ("training", lambda: training_smoke(model)),
    ):
        start = time.perf_counter()
        try:
            verdict = part()
        except Exception as exc:  # report and go on: the other part still says something
            verdict = f"FAIL {type(exc).__name__}: {exc}"[:500]
        failed |= verdict.startswith("FAIL")
        print(f"smoke: {name}: {verdict} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
