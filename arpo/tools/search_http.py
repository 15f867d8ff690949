"""A user's search API over HTTP, with every answer cached on disk (SQLite) so reruns are free.

Request: POST a JSON body {"query": ..., "top_k": ...} (or GET with those as URL parameters),
with `Authorization: Bearer <key>` when a key is set, and `tools.search.headers`. Response: a
JSON list, or an object holding one under "results" / "organic" / "items" / "data" /
"documents"; each item a string or an object with a title and one of "snippet" / "text" /
"content" / "contents" / "body" / "description".
An object with a "result" string in the ARPO `Page i:` format works too.

`http_timeout_s` bounds the whole request, not each socket read: when it passes, a watchdog shuts
the socket, so a server that drips bytes or never answers costs one deadline per call. Expected
failures (timeout, refused connection, broken HTTP, error status, bad JSON) are one-line tool
errors; a timeout is reported as one (`ToolTimeout`).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import threading
import urllib.parse
from pathlib import Path

from arpo.config.tools import SearchToolConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolError, ToolTimeout
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


def _cut(connection: http.client.HTTPConnection, fired: threading.Event) -> None:
    """The watchdog: shutting the socket ends whatever read or write is blocked on it."""
    fired.set()
    if connection.sock is not None:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


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
        self.headers = dict(cfg.headers)
        self.cache = _DiskCache(Path(cfg.cache) if cfg.cache else DEFAULT_CACHE)
        self.requests_made = 0  # calls that reached the API (not answered from the cache)

    def _request(self, query: str, k: int) -> tuple[str, bytes | None, dict]:
        """(target URL, body, headers) of one search request."""
        headers = {"Accept": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.method == "GET":
            params = urllib.parse.urlencode({"query": query, "top_k": k})
            return f"{self.url}{'&' if '?' in self.url else '?'}{params}", None, headers
        headers["Content-Type"] = "application/json"
        return self.url, json.dumps({"query": query, "top_k": k}).encode(), headers

    def _fetch(self, query: str, k: int) -> tuple[int, bytes]:
        """(status, body) of one request, all of it within `timeout_s`."""
        url, body, headers = self._request(query, k)
        parts = urllib.parse.urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = kind(parts.netloc, timeout=self.timeout_s)
        target = parts.path or "/"
        target += f"?{parts.query}" if parts.query else ""
        fired = threading.Event()
        watchdog = threading.Timer(self.timeout_s, _cut, (connection, fired))
        watchdog.daemon = True
        watchdog.start()
        failure = None
        try:
            connection.request(self.method, target, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.status, response.read()
        except (http.client.HTTPException, OSError) as e:  # TimeoutError is an OSError
            failure = e
        finally:
            watchdog.cancel()
            connection.close()
        if fired.is_set() or isinstance(failure, TimeoutError):  # a cut answer may look complete
            raise ToolTimeout(f"search: the search API gave no answer within {self.timeout_s:g} s")
        if isinstance(failure, http.client.HTTPException):
            raise ToolError(f"search: the search API sent a broken HTTP answer ({type(failure).__name__})")
        if failure is not None:
            raise ToolError(f"search: the search API is unreachable ({failure})")
        return answer

    def search(self, query: str, k: int) -> list[str]:
        key = json.dumps([self.url, self.method, query, k])
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        self.requests_made += 1
        status, body = self._fetch(query, k)
        if status >= 400:
            raise ToolError(f"search: the search API answered HTTP {status}")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ToolError("search: the search API answered with invalid JSON") from None
        snippets = parse_response(payload)
        self.cache.put(key, snippets)
        return snippets
