"""Search corpora of generated tasks: JSONL files (`{"id", "title", "text"}` per line) for the
search tool's BM25 backend, written once under `data.cache_dir` and reused."""

from __future__ import annotations

import json
import os
from collections.abc import Callable


def cached_corpus(cache_dir: str, name: str, documents: Callable[[], list[dict]]) -> str:
    """Path of `cache_dir/name`, written from `documents()` on first use."""
    path = os.path.join(cache_dir, name)
    if not os.path.isfile(path):
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"  # several processes may start at once: write, then rename
        with open(tmp, "w", encoding="utf-8") as f:
            for doc in documents():
                f.write(json.dumps(doc) + "\n")
        os.replace(tmp, path)
    return path
