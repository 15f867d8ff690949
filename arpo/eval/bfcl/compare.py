"""`eval.compare=A,B,...`: BFCL results of several models side by side.

Each item is a results directory (holding the results.json of an earlier BFCL run) or a model
(anything `model.path` takes). Models are evaluated one after another, each in its own `arpo
eval` process with this run's resolved config (a fresh process frees one model's engine before the next
loads; a failed model is reported and the others still run), into `<eval.out>/<model name>`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from rich.console import Console

from arpo.config import Config
from arpo.config.loader import save_config
from arpo.errors import ConfigError
from arpo.eval.bfcl.categories import PREFIX
from arpo.eval.bfcl.report import comparison_table


def _results_of(path: str) -> dict | None:
    file = os.path.join(path, "results.json") if os.path.isdir(path) else ""
    if not os.path.isfile(file):
        return None
    with open(file) as f:
        return json.load(f).get("bfcl")


def _label(item: str) -> str:
    return os.path.basename(os.path.normpath(item)) or item


def _evaluate_model(item: str, out_dir: str, recipe: str, console: Console) -> dict | None:
    command = [
        sys.executable,
        "-m",
        "arpo",
        "eval",
        recipe,
        f"model.path={item}",
        f"eval.out={out_dir}",
        "eval.compare=",
    ]
    console.print(f"[bold]{item}[/bold] -> {out_dir}")
    if subprocess.run(command).returncode != 0:
        console.print(f"arpo: {item}: evaluation failed; left out of the comparison")
        return None
    return _results_of(out_dir)


def compare(cfg: Config) -> dict:
    items = [s.strip() for s in cfg.eval.compare.split(",") if s.strip()]
    if not items:
        raise ConfigError("eval.compare names no model or results directory")
    out_root = cfg.eval.out or os.path.join(cfg.run_dir, "eval")
    console = Console()
    os.makedirs(out_root, exist_ok=True)
    recipe = os.path.join(out_root, "compare_config.yaml")
    save_config(cfg, recipe)
    summaries: dict[str, dict] = {}
    for item in items:
        summary = _results_of(item)
        if summary is None and os.path.isdir(item) and not os.path.isfile(os.path.join(item, "config.json")):
            raise ConfigError(
                f"{item}: neither a BFCL results directory (results.json) nor a model directory"
            )
        if summary is None:
            if not cfg.eval.data.strip().startswith(PREFIX):
                raise ConfigError(f"eval.compare evaluates {item} on BFCL: set eval.data=bfcl:<categories>")
            out_dir = os.path.join(out_root, re.sub(r"[^A-Za-z0-9_.-]", "_", _label(item)))
            summary = _evaluate_model(item, out_dir, recipe, console)
        if summary is not None:
            summaries[_label(item)] = summary
    if summaries:
        console.print(comparison_table(summaries))
    return summaries
