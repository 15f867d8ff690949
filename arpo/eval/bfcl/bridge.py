"""arpo's side of the pipe to BFCL's own code (worker.py), run in its separate environment.

The environment's interpreter is `$ARPO_BFCL_PYTHON`, else `<repo>/.venv-bfcl/bin/python` (built
by `make .venv-bfcl`). Every request has a deadline: model-written calls are `eval`ed against
BFCL's simulated APIs in that process, so a call that hangs must not hang the run. On a deadline
or a crash the worker is killed and restarted, and the request fails with the reason; the caller
scores the entry as failed.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

from arpo.errors import ArpoError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
# Importing bfcl-eval pulls every provider SDK it supports: minutes on a busy machine.
START_TIMEOUT_S = 900.0


class BfclUnavailable(ArpoError):
    """The separate bfcl-eval environment is missing or broken."""


class RequestFailed(Exception):
    """One request did not get an answer (deadline, crash, or an error inside BFCL's code)."""


def bfcl_python() -> str:
    path = os.environ.get("ARPO_BFCL_PYTHON") or os.path.join(REPO_ROOT, ".venv-bfcl", "bin", "python")
    if not os.path.isfile(path):
        raise BfclUnavailable(
            f"BFCL scoring needs its own environment with bfcl-eval, not found at {path}: "
            f"run `make .venv-bfcl` in the arpo repository (or point ARPO_BFCL_PYTHON at one)"
        )
    return path


class BfclWorker:
    """A long-lived worker process; `request(op, **fields)` returns its answer or raises."""

    def __init__(self, timeout_s: float = 30.0):
        self.python = bfcl_python()
        self.timeout_s = timeout_s
        self.process: subprocess.Popen | None = None
        self.answers: queue.Queue = queue.Queue()
        self.loaded: list[str] = []  # categories to load again after a restart
        self.starts = 0  # how often the worker was started (its state is lost on each restart)
        self.ready = False
        self._start()

    def _start(self) -> None:
        """Spawn the worker; it is waited for (its imports take a while) at the first request, so
        a caller can load its model meanwhile."""
        self.starts += 1
        self.process = subprocess.Popen(
            [self.python, WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if not os.environ.get("ARPO_BFCL_DEBUG") else sys.stderr,
            text=True,
            bufsize=1,
        )
        self.answers = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, args=(self.process, self.answers), daemon=True).start()

    def _wait_ready(self) -> None:
        try:
            self._answer(START_TIMEOUT_S)
        except RequestFailed as e:
            self.close()
            raise BfclUnavailable(f"the bfcl-eval worker ({self.python}) did not start: {e}") from None
        self.ready = True
        if self.loaded:
            self.request("load", START_TIMEOUT_S, categories=self.loaded)

    @staticmethod
    def _read(process: subprocess.Popen, answers: queue.Queue) -> None:
        for line in process.stdout:
            answers.put(line)
        answers.put(None)

    def _answer(self, timeout_s: float) -> dict:
        try:
            line = self.answers.get(timeout=timeout_s)
        except queue.Empty:
            raise RequestFailed(f"no answer within {timeout_s:g} s") from None
        if line is None:
            raise RequestFailed(f"the worker exited (code {self.process.wait()})")
        return json.loads(line)

    def request(self, op: str, timeout_s: float | None = None, **fields):
        if self.process is None or self.process.poll() is not None:
            self._start()
        if not self.ready:
            self._wait_ready()
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        try:
            answer = self._answer(timeout_s or self.timeout_s)
        except RequestFailed:
            self.close()  # its state may be stuck mid-call: start afresh on the next request
            raise
        if "failed" in answer:
            raise RequestFailed(answer["failed"])
        if op == "load":
            self.loaded = sorted(set(self.loaded) | set(fields["categories"]))
        return answer["ok"]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
