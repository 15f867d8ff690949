"""Replay of recorded web-search results (the ARPO cache: query -> "Page 1: ...\\nPage 2: ...").

A query recorded verbatim, or equal after normalisation (case, punctuation, spacing), replays its
snippets; any other query is answered by BM25 over all recorded snippets, so training offline
still returns real text related to the query.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from arpo.errors import ConfigError
from arpo.tools.search_bm25 import Bm25Index

PAGE = re.compile(r"(?:^|\n)Page \d+:\s*")


def split_pages(text: str) -> list[str]:
    """The snippets of one recorded result, in order."""
    parts = [" ".join(p.split()) for p in PAGE.split(text)]
    return [p for p in parts if p]


def normalise(query: str) -> str:
    return " ".join(re.findall(r"\w+", query.lower()))


class ReplayBackend:
    def __init__(self, cache_path: str):
        path = Path(cache_path)
        if not cache_path or not path.is_file():
            raise ConfigError(f"tools.search.cache: search cache not found: {cache_path!r}")
        try:
            cache = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e.msg})") from None
        if not isinstance(cache, dict):
            raise ConfigError(f"{path}: expected a JSON object mapping query -> result text")
        self.exact = {q: split_pages(str(t)) for q, t in cache.items()}
        self.normalised = {normalise(q): pages for q, pages in self.exact.items()}
        unique = dict.fromkeys(p for pages in self.exact.values() for p in pages)
        self.index = Bm25Index(list(unique))

    def search(self, query: str, k: int) -> list[str]:
        pages = self.exact.get(query) or self.normalised.get(normalise(query))
        return pages[:k] if pages else self.index.search(query, k)
