"""`eval.data` items -> (benchmark name, dataset spec for `load_dataset`)."""

from __future__ import annotations

import os
from collections import Counter

from arpo.data.example import DataError
from arpo.data.loader import TASKS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_EVAL = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "arpo", "eval")
# ARPO's released evaluation sets, each a folder holding test.jsonl.
NAMED = ("gsm8k", "math500", "aime24", "hotpotqa", "2wiki", "webwalker", "gaia")


def _name_of(spec: str) -> str:
    path = spec.rstrip("/\\")
    stem = os.path.basename(path)
    if stem == "test.jsonl":  # eval/<set>/test.jsonl names its set by its folder
        stem = os.path.basename(os.path.dirname(path))
    return os.path.splitext(stem)[0] or "data"


def resolve(item: str) -> tuple[str, str]:
    if item in TASKS or os.path.exists(item):
        return _name_of(item), item
    if item in NAMED:
        path = os.path.join(SHARED_EVAL, item)
        if not os.path.isdir(path):
            raise DataError(f"benchmark '{item}' needs ARPO's eval set at {path}, which is missing")
        return item, path
    raise DataError(
        f"eval.data item '{item}' is not a file or folder, a built-in task ({', '.join(TASKS)}), "
        f"or a benchmark name ({', '.join(NAMED)})"
    )


def benchmarks(data: str) -> list[tuple[str, str]]:
    """Distinct names for every comma-separated item (`name`, `name-2`, ... on clashes)."""
    items = [s.strip() for s in data.split(",") if s.strip()]
    if not items:
        raise DataError("eval.data is empty: name a benchmark, a built-in task or a dataset file")
    out, seen = [], Counter()
    for item in items:
        name, spec = resolve(item)
        seen[name] += 1
        out.append((name if seen[name] == 1 else f"{name}-{seen[name]}", spec))
    return out
