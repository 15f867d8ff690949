"""Runs tool calls on a thread pool (each python call is its own sandboxed process) and records
what every call cost. Nothing a call does raises into the caller: failures become error results."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from arpo.tools.base import ToolCall, ToolError, ToolResult
from arpo.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    name: str
    latency_s: float  # execution time
    queued_s: float  # time waiting for a free worker
    error: str | None
    timed_out: bool


def error_result(message: str) -> ToolResult:
    return ToolResult(text=f"Error: {message}", error=message)


class ToolExecutor:
    def __init__(self, registry: ToolRegistry, workers: int):
        if workers < 1:
            raise ValueError("ToolExecutor needs at least one worker")
        self.registry = registry
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arpo-tool")
        self._lock = threading.Lock()
        self.records: list[CallRecord] = []

    def run(self, call: ToolCall) -> ToolResult:
        """Execute one call in the calling thread."""
        start = time.monotonic()
        tool = self.registry.get(call.name)
        if call.error is not None:
            result = error_result(call.error)
        elif tool is None:
            result = error_result(f"unknown tool {call.name!r}; available: {', '.join(self.registry.names)}")
        else:
            try:
                result = tool.run(call.arguments)
            except ToolError as e:
                result = error_result(str(e))
            except Exception as e:  # a tool bug must not kill the rollout step
                log.exception("tool %s failed", call.name)
                result = error_result(f"internal failure of tool {call.name!r} ({type(e).__name__}: {e})")
        result.latency_s = time.monotonic() - start
        return result

    def _run_recorded(self, call: ToolCall, submitted: float) -> ToolResult:
        queued = time.monotonic() - submitted
        result = self.run(call)
        with self._lock:
            self.records.append(
                CallRecord(call.name, result.latency_s, queued, result.error, result.timed_out)
            )
        return result

    def submit(self, call: ToolCall) -> Future[ToolResult]:
        return self._pool.submit(self._run_recorded, call, time.monotonic())

    def summary(self) -> dict:
        """Per tool: calls, errors, timeouts, mean and max latency (seconds)."""
        with self._lock:
            records = list(self.records)
        out = {}
        for name in dict.fromkeys(r.name for r in records):
            mine = [r for r in records if r.name == name]
            latencies = [r.latency_s for r in mine]
            out[name] = {
                "calls": len(mine),
                "errors": sum(r.error is not None for r in mine),
                "timeouts": sum(r.timed_out for r in mine),
                "mean_latency_s": sum(latencies) / len(latencies),
                "max_latency_s": max(latencies),
            }
        return out

    def shutdown(self) -> None:
        """Wait for running calls, then stop what the tools hold open (MCP servers)."""
        self._pool.shutdown(wait=True)
        self.registry.close()

    def __enter__(self) -> ToolExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
