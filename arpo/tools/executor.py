"""Runs tool calls on a thread pool (each python call is its own sandboxed process) and records
what every call cost. Nothing a call does raises into the caller: failures become error results.

Every call has a whole-call deadline: the tool's `deadline_s` attribute when it has one, else the
executor's `deadline_s`. A call still running then is answered with a timeout error result (counted
in `timeouts`) and left to finish on its own thread, so a hung backend costs each call one deadline
and never blocks the pool; tools should bound their own work too (the built-in ones do)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from arpo.errors import ConfigError
from arpo.tools.base import ToolCall, ToolError, ToolResult, ToolTimeout
from arpo.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    name: str
    latency_s: float  # execution time
    queued_s: float  # time waiting for a free worker
    error: str | None
    timed_out: bool


DEFAULT_DEADLINE_S = 60.0


def error_result(message: str, timed_out: bool = False) -> ToolResult:
    return ToolResult(text=f"Error: {message}", error=message, timed_out=timed_out)


class ToolExecutor:
    def __init__(self, registry: ToolRegistry, workers: int, deadline_s: float = DEFAULT_DEADLINE_S):
        if workers < 1:
            raise ValueError("ToolExecutor needs at least one worker")
        if not deadline_s > 0:
            raise ConfigError(f"tools.deadline_s must be positive, got {deadline_s}")
        self.registry = registry
        self.deadline_s = deadline_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arpo-tool")
        self._lock = threading.Lock()
        self.records: list[CallRecord] = []

    def run(self, call: ToolCall) -> ToolResult:
        """Execute one call from the calling thread, waiting at most the tool's deadline."""
        start = time.monotonic()
        tool = self.registry.get(call.name)
        if call.error is not None:
            result = error_result(call.error)
        elif tool is None:
            result = error_result(f"unknown tool {call.name!r}; available: {', '.join(self.registry.names)}")
        else:
            result = self._within_deadline(tool, call)
        result.latency_s = time.monotonic() - start
        return result

    def _within_deadline(self, tool, call: ToolCall) -> ToolResult:
        deadline = getattr(tool, "deadline_s", None) or self.deadline_s
        done: list[ToolResult] = []
        worker = threading.Thread(
            target=lambda: done.append(_call_tool(tool, call)), name=f"arpo-tool-{call.name}", daemon=True
        )
        worker.start()
        worker.join(deadline)
        if done:
            return done[0]
        return error_result(f"tool {call.name!r} gave no result within {deadline:g} s", timed_out=True)

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


def _call_tool(tool, call: ToolCall) -> ToolResult:
    try:
        return tool.run(call.arguments)
    except ToolTimeout as e:
        return error_result(str(e), timed_out=True)
    except ToolError as e:
        return error_result(str(e))
    except Exception as e:  # a tool bug must not kill the rollout step
        log.exception("tool %s failed", call.name)
        return error_result(f"internal failure of tool {call.name!r} ({type(e).__name__}: {e})")
