"""Local BM25 search (`bm25s`): an index over snippets, and the JSONL-corpus backend."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s

from arpo.errors import ConfigError


class Bm25Index:
    def __init__(self, texts: list[str]):
        if not texts:
            raise ConfigError("search: cannot build a BM25 index over an empty corpus")
        self.texts = texts
        corpus_tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        self._retriever = None  # stays None when no text has an indexable word
        if any(corpus_tokens.ids):
            self._retriever = bm25s.BM25()
            self._retriever.index(corpus_tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[str]:
        """Up to k texts with a positive score, best first."""
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        if self._retriever is None or not tokens[0]:
            return []
        k = min(k, len(self.texts))
        docs, scores = self._retriever.retrieve(tokens, k=k, show_progress=False)
        return [self.texts[d] for d, s in zip(docs[0].tolist(), scores[0].tolist()) if s > 0]


def _document_text(row: dict, where: str) -> str:
    if "contents" in row:
        text = str(row["contents"])
    elif "text" in row:
        title = str(row.get("title", "")).strip()
        text = f"{title}: {row['text']}" if title else str(row["text"])
    else:
        raise ConfigError(f"{where}: a corpus row needs 'contents' or 'text' (with optional 'title')")
    return " ".join(text.split())  # one line per snippet, as the `Page i:` format needs


class Bm25Backend:
    """Search over a JSONL corpus of {"id", "title", "text"} or {"contents"} rows."""

    def __init__(self, corpus_path: str):
        path = Path(corpus_path)
        if not corpus_path or not path.is_file():
            raise ConfigError(f"tools.search.corpus: JSONL corpus not found: {corpus_path!r}")
        texts = []
        with path.open() as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                    texts.append(_document_text(row, f"{path}:{n}"))
        self.index = Bm25Index(texts)

    def search(self, query: str, k: int) -> list[str]:
        return self.index.search(query, k)
