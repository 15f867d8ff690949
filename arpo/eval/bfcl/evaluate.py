"""`arpo eval eval.data=bfcl:...`: a model on BFCL's categories, scored by BFCL's own checker.

Order of work, cheapest failure first: category names and the protocol, the bfcl-eval
environment (its worker then starts while the model loads), the model (a tokenizer without a
chat template stops here), BFCL's data, then generation category by category. Writes
`results.json` (its `bfcl` section) and `transcripts_bfcl_<category>.jsonl` (per entry: the
conversation as the model saw it, every answer with its decoded calls and execution results,
BFCL's verdict and reason) to `eval.out` (default `<run_dir>/eval`), appending as batches finish.
"""

from __future__ import annotations

import dataclasses
import os
import time

import torch
from rich.console import Console

from arpo.agent.engine import build_engine
from arpo.config import Config
from arpo.errors import ConfigError
from arpo.eval.bfcl.bridge import START_TIMEOUT_S, BfclWorker
from arpo.eval.bfcl.calls import FC, call_style
from arpo.eval.bfcl.categories import kind, parse
from arpo.eval.bfcl.report import cache_note, category_metrics, overall, print_results
from arpo.eval.bfcl.runner import CategoryRun, select
from arpo.eval.bfcl.sizing import conversations_at_once, native_slots, with_cache_for
from arpo.eval.report import append_jsonl, write_results
from arpo.models import load_model
from arpo.rollout.vllm.engine import require_vllm

FORMAT_NOTE = {
    FC: "the chat template carries the tools (function-calling format)",
    "prompt": "the chat template ignores tools: BFCL's prompt style, calls written [f(a=1)]",
}


def check_protocol(cfg: Config) -> None:
    if not cfg.eval.greedy or cfg.eval.k != 1:
        raise ConfigError("BFCL is scored on one greedy answer per entry: drop eval.greedy=false / eval.k")
    if cfg.eval.limit < 0 or cfg.eval.batch_size < 1:
        raise ConfigError("eval.limit must be >= 0 and eval.batch_size >= 1")
    if cfg.rollout.engine == "vllm":
        require_vllm()


def model_context(cfg: Config, model) -> int:
    """Tokens a conversation may reach: vLLM's max_model_len when set, else the model's own."""
    own = getattr(model.config, "max_position_embeddings", None) or 32768
    return (
        min(own, cfg.rollout.vllm.max_model_len)
        if cfg.rollout.engine == "vllm" and cfg.rollout.vllm.max_model_len
        else own
    )


def with_context(cfg: Config, context: int) -> Config:
    """vLLM sized for BFCL's long conversations rather than data.max_prompt_tokens."""
    vllm = dataclasses.replace(cfg.rollout.vllm, max_model_len=context)
    return dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, vllm=vllm))


def run_bfcl(cfg: Config) -> dict:
    """`eval.compare` (several models or result directories) or one model on BFCL."""
    if cfg.eval.compare:
        from arpo.eval.bfcl.compare import compare

        return compare(cfg)
    return evaluate_bfcl(cfg)


def evaluate_bfcl(cfg: Config) -> dict:
    categories = parse(cfg.eval.data)
    check_protocol(cfg)
    console = Console()
    worker = BfclWorker()  # starts while the model loads
    try:
        model, tokenizer = load_model(cfg.model)
        style = call_style(tokenizer, cfg.model.path)
        loaded = worker.request("load", START_TIMEOUT_S, categories=categories)["entries"]
        data = {c: select(loaded[c], cfg.eval.limit, cfg.data.seed) for c in categories}
        model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        context = model_context(cfg, model)
        slots = native_slots(cfg, categories, model, context)
        sized = with_cache_for(with_context(cfg, context), slots * context)
        engine = build_engine(
            sized.rollout, cfg.model, model, tokenizer, max_prompt_tokens=context, seed=cfg.seed
        )
        out_dir = cfg.eval.out or os.path.join(cfg.run_dir, "eval")
        os.makedirs(out_dir, exist_ok=True)
        console.print(
            f"{cfg.model.path}: BFCL {', '.join(f'{c} ({len(d)})' for c, d in data.items())}; "
            f"{FORMAT_NOTE[style]}; greedy, up to {cfg.rollout.max_response_tokens} tokens per answer; "
            f"writing to {out_dir}",
            markup=False,
        )
        run = CategoryRun(engine, tokenizer, worker, style, cfg.rollout.max_response_tokens, context)
        results = {
            c: _category(run, c, entries, conversations_at_once(cfg, c, slots), out_dir, console)
            for c, entries in data.items()
        }
    finally:
        worker.close()
    summary = {
        "model": cfg.model.path,
        "engine": cfg.rollout.engine,
        "call_format": style,
        "call_format_note": FORMAT_NOTE[style],
        "max_response_tokens": cfg.rollout.max_response_tokens,
        "limit": cfg.eval.limit,
        "seed": cfg.data.seed,
        "categories": results,
        "overall": overall(results),
    }
    print_results(summary, console)
    console.print(f"results: {write_results(out_dir, {'bfcl': summary})}")
    return summary


def _category(
    run: CategoryRun, category: str, entries: list[dict], at_once: int, out_dir: str, console
) -> dict:
    path = os.path.join(out_dir, f"transcripts_bfcl_{category}.jsonl")
    open(path, "w").close()
    done = [0]

    def on_done(records: list[dict]) -> None:
        append_jsonl(path, records)
        done[0] += len(records)
        right = sum(r["valid"] for r in records)
        console.print(f"  {category}: {done[0]}/{len(entries)}, {right} of the last {len(records)} right")

    if kind(category) == "multi_turn":
        console.print(
            f"  {category}: {at_once} conversations at a time (eval.batch_size, on the native sampler "
            f"as far as half the free memory holds their KV cache at the full context of {run.context})",
            markup=False,
        )
    start = time.perf_counter()
    records = run.run(category, entries, at_once, on_done)
    metrics = category_metrics(records, time.perf_counter() - start)
    if note := cache_note(category, metrics["kv_cache"]):
        console.print(note, markup=False)
    return metrics
