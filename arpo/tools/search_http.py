"""A user's search API over HTTP, with every answer cached on disk (SQLite) so reruns are free.

Request: POST a JSON body {"query": ..., "top_k": ...} (or GET with those as URL parameters),
with `Authorization: Bearer <key>` when a key is set. Response: a JSON list, or an object holding
one under "results" / "organic" / "items" / "data" / "documents"; each item a string or an object
with a title and one of "snippet" / "text" / "content" / "contents" / "body" / "description".
An object with a "result" string in the ARPO `Page i:` format works too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from arpo.config.tools import SearchToolConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolError
from arpo.tools.search_replay import split_pages

LIST_KEYS = ("results", "organic", "items", "data", "documents")
TEXT_KEYS = ("snippet", "text", "content", "contents", "body", "description")
DEFAULT_CACHE = Path.home() / ".cache" / "arpo" / "search_http.sqlite"


def _snippet(item) -> str | None:
    if isinstance(item, str):
        return " ".join(item.split()) or None
    if not isinstance(item, dict):
        return None
    body = next((str(item[k]) for k in TEXT_KEYS if item.get(k)), "")
    title = str(item.get("title") or "")
    text = f"{title}: {body}" if title and body else title or body
    return " ".join(text.split()) or None


def parse_response(payload) -> list[str]:
    if isinstance(payload, dict):
        if isinstance(payload.get("result"), str):
            return split_pages(payload["result"])
        payload = next((payload[k] for k in LIST_KEYS if isinstance(payload.get(k), list)), None)
    if not isinstance(payload, list):
        raise ToolError("search: the search API answered with an unrecognised JSON shape")
    return [s for s in map(_snippet, payload) if s]


class _DiskCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.Lock()
        with self._lock, sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, snippets TEXT NOT NULL)")

    def get(self, key: str) -> list[str] | None:
        with self._lock, sqlite3.connect(self.path) as db:
            row = db.execute("SELECT snippets FROM results WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, snippets: list[str]) -> None:
        with self._lock, sqlite3.connect(self.path) as db:
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(snippets)))


class HttpBackend:
    def __init__(self, cfg: SearchToolConfig):
        if not cfg.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"tools.search.url: an http(s) URL is required for the http backend, got {cfg.url!r}"
            )
        self.url = cfg.url
        self.method = cfg.http_method
        self.timeout_s = cfg.http_timeout_s
        self.api_key = cfg.api_key or os.environ.get("ARPO_SEARCH_API_KEY", "")
        self.cache = _DiskCache(Path(cfg.cache) if cfg.cache else DEFAULT_CACHE)
        self.requests_made = 0  # calls that reached the API (not answered from the cache)

    def _request(self, query: str, k: int) -> urllib.request.Request:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.method == "GET":
            params = urllib.parse.urlencode({"query": query, "top_k": k})
            sep = "&" if "?" in self.url else "?"
            return urllib.request.Request(f"{self.url}{sep}{params}", headers=headers, method="GET")
        headers["Content-Type"] = "application/json"
        body = json.dumps({"query": query, "top_k": k}).encode()
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def search(self, query: str, k: int) -> list[str]:
        key = json.dumps([self.url, self.method, query, k])
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        self.requests_made += 1
        try:
            with urllib.request.urlopen(self._request(query, k), timeout=self.timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise ToolError(f"search: the search API answered HTTP {e.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise ToolError(f"search: the search API is unreachable ({e})") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ToolError("search: the search API answered with invalid JSON") from None
        snippets = parse_response(payload)
        self.cache.put(key, snippets)
        return snippets
