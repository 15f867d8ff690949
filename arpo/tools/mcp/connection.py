"""One MCP server for the life of a run: its own event-loop thread, one client session, one server
process (stdio) or HTTP session, restarted once if it dies, shut down with the run.

The SDK is async; the tool executor calls from its worker threads. Each connection therefore runs
an asyncio loop in a thread of its own, and `call` hands coroutines to it and waits on the
returned future with the call's deadline. One task (`_serve`) enters and leaves the transport and
session contexts, which the SDK requires to happen in the same task; calls are separate tasks
sharing the session, so several run at once.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import tempfile
import threading

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from arpo.config.tools import McpServerConfig

CLOSE_TIMEOUT_S = 10.0  # the SDK stops a stdio server (terminate, then kill) well within this
PING_TIMEOUT_S = 2.0


class McpUnavailable(Exception):
    """The server cannot take calls (it did not start, or died again after its one restart)."""


class CallTimeout(Exception):
    """A call got no answer within its deadline (the server may still be working on it)."""


def _one_line(exc: BaseException) -> str:
    """The innermost useful message of `exc` (task groups wrap the real error)."""
    while getattr(exc, "exceptions", None):  # an exception group
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class McpConnection:
    def __init__(self, cfg: McpServerConfig):
        self.cfg = cfg
        self.restarts = 0
        self._session: ClientSession | None = None
        self._stop: asyncio.Event | None = None
        self._served: asyncio.Task | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"arpo-mcp-{cfg.name}", daemon=True
        )
        self._thread.start()
        self._stderr = tempfile.TemporaryFile("w+")  # a stdio server's stderr, read when it fails
        atexit.register(self.close)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> list[types.Tool]:
        """Start the server and list its tools, within `startup_timeout_s`."""
        future = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            return future.result(self.cfg.startup_timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise McpUnavailable(
                f"no answer within startup_timeout_s={self.cfg.startup_timeout_s:g}"
            ) from None
        except McpUnavailable:
            raise
        except BaseException as e:
            raise McpUnavailable(_one_line(e)) from None

    async def _streams(self, stack: contextlib.AsyncExitStack):
        if self.cfg.url:
            import httpx2  # the SDK's HTTP client

            timeout = httpx2.Timeout(30, read=300)
            client = await stack.enter_async_context(
                httpx2.AsyncClient(headers=dict(self.cfg.headers), timeout=timeout)
            )
            return await stack.enter_async_context(streamable_http_client(self.cfg.url, http_client=client))
        params = StdioServerParameters(
            command=self.cfg.command, args=list(self.cfg.args), env=dict(self.cfg.env)
        )
        return await stack.enter_async_context(stdio_client(params, errlog=self._stderr))

    async def _open(self) -> list[types.Tool]:
        ready = self._loop.create_future()
        self._stop = asyncio.Event()
        self._served = asyncio.create_task(self._serve(ready, self._stop))
        return await ready

    async def _serve(self, ready: asyncio.Future, stop: asyncio.Event) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = (await self._streams(stack))[:2]
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                tools = await _list_all(session)
                self._session = session
                ready.set_result(tools)
                await stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(McpUnavailable(self._why(e)))
        finally:
            self._session = None

    def _why(self, exc: BaseException) -> str:
        """The error, and the last line the server wrote to stderr (how a crashed server ends)."""
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().splitlines() if line.strip()]
        said = f"; its stderr ends with: {lines[-1][:200]}" if lines else ""
        return _one_line(exc) + said

    def close(self) -> None:
        """Stop the server (a stdio process is terminated, then killed) and the loop thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(CLOSE_TIMEOUT_S)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)
        self._stderr.close()

    async def _shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._served is not None:
            await asyncio.wait([self._served], timeout=CLOSE_TIMEOUT_S)

    # -- calls --------------------------------------------------------------------------------

    def _live_session(self) -> ClientSession:
        """The session, after restarting a dead server once."""
        with self._lock:
            if self._closed:
                raise McpUnavailable("the run is shutting down")
            if self._session is not None:
                return self._session
            if self.restarts >= 1:
                raise McpUnavailable("the server died again after its restart")
            self.restarts += 1
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(CLOSE_TIMEOUT_S)
            self.start()
            return self._session

    def call(self, name: str, arguments: dict) -> types.CallToolResult:
        """One tool call within `timeout_s`; raises CallTimeout, McpUnavailable or the SDK's error."""
        session = self._live_session()
        timeout = self.cfg.timeout_s
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(session.call_tool(name, arguments, read_timeout_seconds=timeout), timeout),
            self._loop,
        )
        try:
            return future.result(timeout + 1.0)
        except (concurrent.futures.TimeoutError, TimeoutError):
            future.cancel()
            raise CallTimeout(f"no result within {timeout:g} s") from None
        except Exception as e:
            if not self._answers_ping(session):
                self._mark_dead(session)
                raise McpUnavailable(f"the server died during the call ({_one_line(e)})") from None
            raise

    def _answers_ping(self, session: ClientSession) -> bool:
        ping = asyncio.wait_for(session.send_ping(), PING_TIMEOUT_S)
        try:
            asyncio.run_coroutine_threadsafe(ping, self._loop).result(PING_TIMEOUT_S + 1.0)
            return True
        except Exception:
            return False

    def _mark_dead(self, session: ClientSession) -> None:
        with self._lock:
            if self._session is session:
                self._session = None


async def _list_all(session: ClientSession) -> list[types.Tool]:
    tools, cursor = [], None
    while True:
        page = await session.list_tools(
            params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            return tools
