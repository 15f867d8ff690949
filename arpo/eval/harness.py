"""`arpo eval`: each benchmark's prompts in batches through the rollout engine with tools, scored by
the examples' rewards; greedy (one answer per question) or `eval.k` samples per question."""

from __future__ import annotations

import dataclasses
import os
import re
import time

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arpo import output
from arpo.agent.engine import build_engine
from arpo.agent.prompts import fitting_prompts
from arpo.agent.rollout import Agent, greedy
from arpo.agent.tools import agent_executor, agent_parser
from arpo.analysis.records import append_records, trajectory_record
from arpo.analysis.report import eval_entropy
from arpo.config import Config
from arpo.config.rollout import RolloutConfig
from arpo.data import Example, load_dataset
from arpo.data.loader import TASKS
from arpo.eval.benchmarks import benchmarks
from arpo.eval.bfcl import is_bfcl
from arpo.eval.metrics import benchmark_metrics
from arpo.eval.report import append_jsonl, print_table, transcript_rows, write_results
from arpo.models import load_model
from arpo.outdirs import check_writable_dir
from arpo.rewards import load_reward
from arpo.rollout.vllm import require_vllm


def protocol(cfg: Config) -> RolloutConfig:
    """Greedy: one answer at temperature 0. Sampling: k independent samples (N = M = k, so no
    branching) at the rollout's temperature. The config loader has checked the combination."""
    if cfg.eval.greedy:
        return greedy(cfg.rollout)
    return dataclasses.replace(cfg.rollout, M=cfg.eval.k, N=cfg.eval.k)


def load_benchmark(cfg: Config, spec: str) -> list[Example]:
    """`eval.limit` questions drawn with data.seed in file order; else a whole file, or
    data.val_size problems of a built-in task's held-out split."""
    size = cfg.eval.limit or (cfg.data.val_size if spec in TASKS else 0)
    return load_dataset(spec, "val", dataclasses.replace(cfg.data, val_size=size))


def evaluate(cfg: Config) -> dict:
    if cfg.eval.compare or is_bfcl(cfg.eval.data):
        from arpo.eval.bfcl.evaluate import run_bfcl

        return run_bfcl(cfg)
    if cfg.rollout.engine == "vllm":
        require_vllm()
    rollout = protocol(cfg)
    out_dir = cfg.eval.out or os.path.join(cfg.run_dir, "eval")
    check_writable_dir(out_dir, "eval.out" if cfg.eval.out else "run_dir")
    # Every benchmark is read before the model loads, so a bad path fails at once.
    data = {name: load_benchmark(cfg, spec) for name, spec in benchmarks(cfg.eval.data or cfg.data.val)}
    reward_fn = load_reward(cfg.reward)
    model, tokenizer = load_model(cfg.model)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    engine = build_engine(
        cfg.rollout, cfg.model, model, tokenizer, max_prompt_tokens=cfg.data.max_prompt_tokens, seed=cfg.seed
    )
    output.say(
        f"{cfg.model.path}: {', '.join(f'{n} ({len(d)})' for n, d in data.items())}; "
        f"{'greedy' if cfg.eval.greedy else f'{cfg.eval.k} samples at T={rollout.temperature}'}; "
        f"writing to {out_dir}"
    )
    results = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=output.console, disable=not output.enabled()) as progress:
        for name, examples in data.items():
            executor = agent_executor(cfg.tools, examples)  # the same tools (and MCP servers) as training
            try:
                parser = agent_parser(cfg.tools, executor, tokenizer, examples)
                examples = fitting_prompts(examples, tokenizer, parser, cfg.data.max_prompt_tokens, name)
            except BaseException:
                executor.shutdown()
                raise
            agent = Agent(tokenizer, engine, parser, executor, reward_fn, cfg.tools.result_max_tokens)
            results[name] = run_benchmark(cfg, agent, rollout, name, examples, out_dir, progress)
    print_table(results, cfg.eval.k)
    summary = {
        "model": cfg.model.path,
        "engine": cfg.rollout.engine,
        "greedy": cfg.eval.greedy,
        "k": cfg.eval.k,
        "temperature": rollout.temperature,
        "max_response_tokens": rollout.max_response_tokens,
        "max_tool_calls": rollout.max_tool_calls,
        "tools": list(cfg.tools.enabled),
        "tool_format": cfg.tools.format,
        "system_prompt": cfg.data.system_prompt,
        "reward": cfg.reward.name,
        "seed": cfg.seed,
        "benchmarks": results,
    }
    output.say(f"results: {write_results(out_dir, summary)}")
    return summary


def run_benchmark(
    cfg: Config,
    agent: Agent,
    rollout: RolloutConfig,
    name: str,
    examples: list[Example],
    out_dir: str,
    progress: Progress,
) -> dict:
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
            batch_groups = agent.run(batch, rollout, cfg.seed, ids)
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
