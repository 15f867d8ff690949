"""`arpo eval`: each benchmark's prompts in batches through the rollout engine with tools, scored by
the examples' rewards; greedy (one answer per question) or `eval.k` samples per question."""

from __future__ import annotations

import dataclasses
import os
import re
import time

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arpo.analysis.records import append_records, trajectory_record
from arpo.analysis.report import eval_entropy
from arpo.config import Config
from arpo.data import Example, load_dataset
from arpo.data.loader import TASKS
from arpo.errors import ConfigError
from arpo.eval.metrics import benchmark_metrics
from arpo.eval.report import append_jsonl, print_table, transcript_rows, write_results
from arpo.eval.sources import benchmarks
from arpo.models import load_model
from arpo.rewards import load_reward
from arpo.rollout.arpo_rollout import check_rollout_config
from arpo.rollout.build import build_engine
from arpo.rollout.config import RolloutConfig
from arpo.rollout.vllm_engine import require_vllm
from arpo.trainer.components import Components, agent_tools, fitting_prompts
from arpo.trainer.generate import generate, greedy, score


def protocol(cfg: Config) -> RolloutConfig:
    """Greedy: one answer at temperature 0. Sampling: k independent samples (N = M = k, so no
    branching) at the rollout's temperature."""
    e = cfg.eval
    if e.k < 1 or e.batch_size < 1 or e.limit < 0:
        raise ConfigError(
            f"eval.k and eval.batch_size must be >= 1 and eval.limit >= 0, "
            f"got k={e.k}, batch_size={e.batch_size}, limit={e.limit}"
        )
    if e.greedy:
        if e.k != 1:
            raise ConfigError(
                f"eval.greedy=true gives one answer per question; set eval.greedy=false for k={e.k}"
            )
        rollout = greedy(cfg.rollout)
    else:
        if cfg.rollout.temperature <= 0 and e.k > 1:
            raise ConfigError("eval.k > 1 needs rollout.temperature > 0 (temperature 0 repeats one answer)")
        rollout = dataclasses.replace(cfg.rollout, M=e.k, N=e.k)
    check_rollout_config(rollout)
    return rollout


def load_benchmark(cfg: Config, spec: str) -> list[Example]:
    """`eval.limit` questions drawn with data.seed in file order; else a whole file, or
    data.val_size problems of a built-in task's held-out split."""
    size = cfg.eval.limit or (cfg.data.val_size if spec in TASKS else 0)
    return load_dataset(spec, "val", dataclasses.replace(cfg.data, val_size=size))


def evaluate(cfg: Config) -> dict:
    if cfg.rollout.engine == "vllm":
        require_vllm()
    rollout = protocol(cfg)
    # Every benchmark is read before the model loads, so a bad path fails at once.
    data = {name: load_benchmark(cfg, spec) for name, spec in benchmarks(cfg.eval.data or cfg.data.val)}
    reward_fn = load_reward(cfg.reward)
    model, tokenizer = load_model(cfg.model)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    engine = build_engine(cfg, model, tokenizer)
    out_dir = cfg.eval.out or os.path.join(cfg.run_dir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    console = Console()
    console.print(
        f"{cfg.model.path}: {', '.join(f'{n} ({len(d)})' for n, d in data.items())}; "
        f"{'greedy' if cfg.eval.greedy else f'{cfg.eval.k} samples at T={rollout.temperature}'}; "
        f"writing to {out_dir}"
    )
    results = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        for name, examples in data.items():
            examples = fitting_prompts(examples, tokenizer, cfg.data.max_prompt_tokens, name)
            agent = Components(model, tokenizer, engine, *agent_tools(cfg, examples), reward_fn, [], examples)
            results[name] = run_benchmark(cfg, agent, engine, rollout, name, examples, out_dir, progress)
    print_table(results, cfg.eval.k, console)
    summary = {
        "model": cfg.model.path,
        "engine": cfg.rollout.engine,
        "greedy": cfg.eval.greedy,
        "k": cfg.eval.k,
        "temperature": rollout.temperature,
        "max_response_tokens": rollout.max_response_tokens,
        "max_tool_calls": rollout.max_tool_calls,
        "tools": list(cfg.tools.enabled),
        "seed": cfg.seed,
        "benchmarks": results,
    }
    console.print(f"results: {write_results(out_dir, summary)}")
    return summary


def run_benchmark(cfg, agent, engine, rollout, name, examples, out_dir, progress) -> dict:
    """One benchmark, batch by batch; transcripts are appended as batches finish. Group ids are
    question indices, so every question samples the same streams whatever `eval.batch_size`."""
    path = os.path.join(out_dir, f"transcripts_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.jsonl")
    records_path = path.replace("transcripts_", "trajectories_", 1)  # per-token entropies
    open(path, "w").close()
    open(records_path, "w").close()
    task = progress.add_task(name, total=len(examples))
    groups = []
    start_time = time.perf_counter()
    try:
        for start in range(0, len(examples), cfg.eval.batch_size):
            batch = examples[start : start + cfg.eval.batch_size]
            ids = list(range(start, start + len(batch)))
            batch_groups = generate(agent, engine, batch, rollout, cfg.seed, ids)
            score(agent, batch_groups, batch)
            append_jsonl(path, transcript_rows(batch_groups, batch))
            append_records(
                records_path, [trajectory_record(t, g.group_id) for g in batch_groups for t in g.trajectories]
            )
            groups.extend(batch_groups)
            progress.advance(task, len(batch))
    finally:
        agent.executor.shutdown()
    metrics = benchmark_metrics(groups, cfg.eval.k, time.perf_counter() - start_time)
    return metrics | eval_entropy(groups, rollout.k, records_path)
