"""Search backends: BM25 over a generated corpus, replay of the ARPO cache, HTTP with a disk cache."""

import json
import logging
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from arpo.config.tools import SearchToolConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolCall, ToolError
from arpo.tools.executor import ToolExecutor
from arpo.tools.registry import ToolRegistry
from arpo.tools.search_http import HttpBackend, parse_response
from arpo.tools.search_replay import ReplayBackend, normalise, split_pages
from arpo.tools.search_tool import SearchTool, format_pages

SYLLABLES = ["zor", "vath", "quil", "mere", "drak", "ulon", "bex", "tari", "nom", "ysk", "pell", "orin"]


def _name(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def _fictional_corpus(n=60, seed=0):
    rng = random.Random(seed)
    people = list(dict.fromkeys(_name(rng) for _ in range(n * 2)))[:n]
    towns = [_name(rng) + "ton" for _ in range(n)]
    return [
        {"id": str(i), "title": p, "text": f"{p} was born in {t} and worked as a lighthouse keeper."}
        for i, (p, t) in enumerate(zip(people, towns))
    ]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ---- bm25 ----


def test_bm25_finds_the_document_about_the_entity(tmp_path):
    rows = _fictional_corpus()
    cfg = SearchToolConfig(backend="bm25", corpus=_write_jsonl(tmp_path / "c.jsonl", rows), top_k=3)
    tool = SearchTool(cfg)
    for row in random.Random(1).sample(rows, 10):
        text = tool.run({"query": f"where was {row['title']} born"}).text
        first = text.splitlines()[0]
        assert first == f"Page 1: {row['title']}: {row['text']}"
        assert len(text.splitlines()) <= 3


def test_bm25_contents_rows_and_truncation(tmp_path):
    rows = [{"contents": f"Fact {i}: the moon of Kelvora has {i} craters.\nSecond line."} for i in range(20)]
    cfg = SearchToolConfig(
        backend="bm25", corpus=_write_jsonl(tmp_path / "c.jsonl", rows), top_k=5, max_chars=80
    )
    text = SearchTool(cfg).run({"query": "Kelvora craters"}).text
    assert text.startswith("Page 1: Fact ") and "\n" not in text[:60]  # one line per snippet
    assert text.endswith(" ...") and len(text) <= 80 + len(" ...")
    assert SearchTool(cfg).run({"query": "unrelated zebra"}).text == "No results found."


def test_bm25_bad_corpus(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        SearchTool(SearchToolConfig(backend="bm25", corpus=str(tmp_path / "missing.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{not json}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: invalid JSON"):
        SearchTool(SearchToolConfig(backend="bm25", corpus=str(bad)))
    with pytest.raises(ConfigError, match="needs 'contents' or 'text'"):
        SearchTool(
            SearchToolConfig(backend="bm25", corpus=_write_jsonl(tmp_path / "x.jsonl", [{"body": "b"}]))
        )


def test_search_tool_rejects_empty_query(tmp_path):
    cfg = SearchToolConfig(backend="bm25", corpus=_write_jsonl(tmp_path / "c.jsonl", _fictional_corpus(5)))
    with pytest.raises(ToolError, match="empty query"):
        SearchTool(cfg).run({"query": "  \n "})
    with pytest.raises(ToolError, match="must be a string"):
        SearchTool(cfg).run({"query": 3})


def test_format_pages():
    assert format_pages(["a", "b", "c"], 2, 100) == "Page 1: a\nPage 2: b"
    assert format_pages(["abcdef"], 1, 5) == "Page ..."


# ---- replay ----


def _small_cache(tmp_path):
    cache = {
        "Amy Smart film debut Campfire Tales": "Page 1: Campfire Tales is a 1997 anthology.\n"
        "Page 2: Amy Smart made her debut in Her Costly Affair.\nPage 3: A third page.",
        "capital of Zorvathia": "Page 1: Quilmere is the capital of Zorvathia.\nPage 2: Zorvathia lies east.",
    }
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(cache))
    return str(path)


def test_split_pages_and_normalise():
    assert split_pages("Page 1: a b\nPage 2:  c\n d \nPage 10: e") == ["a b", "c d", "e"]
    assert normalise("  Amy SMART, film-debut?? ") == "amy smart film debut"


def test_replay_exact_normalised_and_fallback(tmp_path):
    backend = ReplayBackend(_small_cache(tmp_path))
    exact = backend.search("Amy Smart film debut Campfire Tales", 2)
    assert exact == ["Campfire Tales is a 1997 anthology.", "Amy Smart made her debut in Her Costly Affair."]
    assert backend.search("  amy smart FILM debut: campfire tales? ", 2) == exact
    assert backend.search("which city is the capital of Zorvathia", 1) == [
        "Quilmere is the capital of Zorvathia."
    ]
    assert backend.search("completely unrelated words", 3) == []


def test_replay_bad_cache(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        ReplayBackend(str(tmp_path / "none.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        ReplayBackend(str(tmp_path / "list.json"))


def test_replay_on_the_real_arpo_cache(shared_data):
    path = f"{shared_data}/arpo/search_cache.json"
    with open(path) as f:
        cache = json.load(f)
    tool = SearchTool(SearchToolConfig(backend="replay", cache=path, top_k=3, max_chars=100_000))
    all_snippets = set(tool.backend.index.texts)
    assert len(all_snippets) > 5000
    for query in random.Random(0).sample(sorted(cache), 5):
        pages = split_pages(cache[query])
        text = tool.run({"query": query}).text
        assert text == format_pages(pages, 3, 100_000)
        # A query never recorded falls back to BM25 over the recorded snippets; a snippet's own
        # opening words retrieve that snippet.
        target = max(pages, key=len)
        probe = " ".join(target.split()[:12])
        found = tool.backend.search(probe + " zzzunseen", 3)
        assert found and set(found) <= all_snippets and target in found


# ---- http ----


class _Api(BaseHTTPRequestHandler):
    requests: list = []
    mode = "ok"

    def _answer(self, query):
        type(self).requests.append(
            {"method": self.command, "query": query, "auth": self.headers.get("Authorization")}
        )
        if type(self).mode == "error":
            self.send_response(500)
            self.end_headers()
            return
        body = (
            b"not json"
            if type(self).mode == "garbage"
            else json.dumps(
                {"results": [{"title": f"T{i}", "snippet": f"{query} result {i}"} for i in range(5)]}
            ).encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert payload["top_k"] == 2
        self._answer(payload["query"])

    def do_GET(self):
        self._answer(parse_qs(urlparse(self.path).query)["query"][0])

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    _Api.requests, _Api.mode = [], "ok"
    server = HTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/search"
    server.shutdown()
    server.server_close()


def test_http_post_with_key_and_disk_cache(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ARPO_SEARCH_API_KEY", "k-123")
    cfg = SearchToolConfig(backend="http", url=api, cache=str(tmp_path / "http.sqlite"), top_k=2)
    text = SearchTool(cfg).run({"query": "moon of Kelvora"}).text
    assert text == "Page 1: T0: moon of Kelvora result 0\nPage 2: T1: moon of Kelvora result 1"
    assert _Api.requests == [{"method": "POST", "query": "moon of Kelvora", "auth": "Bearer k-123"}]
    rerun = SearchTool(cfg)  # a new process would start like this: only the disk cache is shared
    assert rerun.run({"query": "moon of Kelvora"}).text == text
    assert len(_Api.requests) == 1 and rerun.backend.requests_made == 0


def test_http_get_and_config_key(api, tmp_path):
    cfg = SearchToolConfig(
        backend="http",
        url=api,
        http_method="GET",
        api_key="cfg-key",
        cache=str(tmp_path / "c.sqlite"),
        top_k=2,
    )
    assert SearchTool(cfg).run({"query": "a b&c"}).text.startswith("Page 1: T0: a b&c result 0")
    assert _Api.requests == [{"method": "GET", "query": "a b&c", "auth": "Bearer cfg-key"}]


@pytest.mark.parametrize("mode, message", [("error", "HTTP 500"), ("garbage", "invalid JSON")])
def test_http_failures_are_tool_errors_and_not_cached(api, tmp_path, mode, message):
    _Api.mode = mode
    cfg = SearchToolConfig(backend="http", url=api, cache=str(tmp_path / "c.sqlite"), top_k=2)
    tool = SearchTool(cfg)
    for _ in range(2):
        with pytest.raises(ToolError, match=message):
            tool.run({"query": "q"})
    assert len(_Api.requests) == 2


def test_http_unreachable_and_bad_url(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    cfg = SearchToolConfig(backend="http", url=f"http://127.0.0.1:{port}/", cache=str(tmp_path / "c.sqlite"))
    with pytest.raises(ToolError, match="unreachable"):
        SearchTool(cfg).run({"query": "q"})
    with pytest.raises(ConfigError, match="http"):
        HttpBackend(SearchToolConfig(backend="http", url="ftp://x"))


def test_parse_response_shapes():
    assert parse_response(["a", " b  c "]) == ["a", "b c"]
    assert parse_response({"organic": [{"title": "T", "description": "d"}, {"title": "only"}, {}]}) == [
        "T: d",
        "only",
    ]
    assert parse_response({"result": "Page 1: x\nPage 2: y"}) == ["x", "y"]
    with pytest.raises(ToolError, match="unrecognised"):
        parse_response({"nothing": 1})


# ---- http: servers that misbehave at the socket level ----


def _raw_server(behaviour):
    """A 127.0.0.1 server that reads one request per connection and hands the socket to
    `behaviour(conn, stop)`; every loop in a behaviour is bounded and ends when `stop` is set."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    behaviour(conn, stop)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/search", stop, listener


def _drip(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    for _ in range(100):  # one header byte every 0.1 s, never finishing in time
        if stop.wait(0.1):
            return
        conn.sendall(b"X")


def _hang(conn, stop):
    stop.wait(10)


def _bad_status(conn, stop):
    conn.sendall(b"garbage that is no status line\r\n\r\n")


def _short_body(conn, stop):
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n["only part')


def _closed(conn, stop):
    conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def misbehaving(request):
    url, stop, listener = _raw_server(request.param)
    yield url
    stop.set()
    listener.close()


@pytest.mark.parametrize("misbehaving", [_drip, _hang], indirect=True)
def test_a_slow_api_costs_one_deadline_per_call(misbehaving, tmp_path, caplog):
    cfg = SearchToolConfig(
        backend="http", url=misbehaving, cache=str(tmp_path / "c.sqlite"), http_timeout_s=1.0
    )
    registry = ToolRegistry([SearchTool(cfg)])
    with caplog.at_level(logging.WARNING), ToolExecutor(registry, workers=2) as executor:
        start = time.monotonic()
        futures = [executor.submit(ToolCall("search", {"query": f"q{i}"})) for i in range(4)]
        results = [f.result() for f in futures]
        elapsed = time.monotonic() - start
    assert all(r.timed_out and r.error == "search: the search API gave no answer within 1 s" for r in results)
    assert all(1.0 <= r.latency_s < 3.0 for r in results), [r.latency_s for r in results]
    assert elapsed < 2 * 3.0  # two rounds of two workers
    assert executor.summary()["search"]["timeouts"] == 4
    assert not caplog.records


@pytest.mark.parametrize(
    "misbehaving, message",
    [(_bad_status, "broken HTTP answer (BadStatusLine)"),
     (_short_body, "broken HTTP answer (IncompleteRead)"),
     (_closed, "broken HTTP answer (RemoteDisconnected)")],
    indirect=["misbehaving"],
)  # fmt: skip
def test_broken_http_answers_are_one_line_errors(misbehaving, message, tmp_path, caplog):
    cfg = SearchToolConfig(
        backend="http", url=misbehaving, cache=str(tmp_path / "c.sqlite"), http_timeout_s=5.0
    )
    with (
        caplog.at_level(logging.WARNING),
        ToolExecutor(ToolRegistry([SearchTool(cfg)]), workers=1) as executor,
    ):
        result = executor.submit(ToolCall("search", {"query": "q"})).result()
    assert result.error == f"search: the search API sent a {message}" and not result.timed_out
    assert result.text == f"Error: {result.error}" and "\n" not in result.text
    assert not caplog.records  # no traceback logged for an expected failure
