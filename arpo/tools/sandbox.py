"""Run untrusted Python in a separate, confined process tree and leave nothing behind.

Isolation levels, probed once per process:

- ``full`` (root with `unshare`): new pid, net and mount namespaces; the code sees a file system
  built from an allow-list (the system's programs and libraries and the interpreter's directories,
  read-only; a private tmpfs /tmp as working directory; see `sandbox_runner`) and runs as a uid of
  its own (`uid_base + slot`). Killing the namespace's first process kills every process in it
  (double-forked daemons included), and a final sweep kills whatever still runs under the
  sandbox uid.
- ``userns`` (non-root, unprivileged user namespaces allowed): the same namespaces and file
  system, but the code keeps the caller's uid, so the process limit counts the caller's own
  processes too.
- ``none``: only a new session and rlimits; the code sees the host's files with the caller's
  rights, can reach the network, and a daemon that leaves the process group survives. A warning
  is logged once.

At every level the sandbox ends when the trainer does, whatever kills it: the supervisor inside
watches its end of the status pipe and takes the sandbox down when the trainer's end closes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from arpo.config.tools import PythonToolConfig
from arpo.tools.base import ToolResult

log = logging.getLogger(__name__)

RUNNER_SOURCE = (Path(__file__).parent / "sandbox_runner.py").read_text()
NAMESPACE_FLAGS = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
UID_SPAN = 1024  # concurrent calls per trainer process
PID_BLOCKS = 1 << 20  # uid blocks per host; two live pids share one only if 2**20 apart
MAX_UID_BASE = (1 << 32) - 2 - PID_BLOCKS * UID_SPAN
SIGNAL_CAUSES = {
    signal.SIGXCPU: " (CPU time limit)",
    signal.SIGSEGV: " (crash, e.g. stack overflow)",
    signal.SIGXFSZ: " (file size limit)",
}


@dataclass(frozen=True)
class Isolation:
    level: str  # full | userns | none
    prefix: tuple[str, ...]  # command that enters the namespaces


class _Slots:
    """Small integers unique among this process's concurrent calls: each call's uid offset."""

    def __init__(self, size: int):
        self._free = list(range(size))
        self._cond = threading.Condition()

    def acquire(self) -> int:
        with self._cond:
            while not self._free:
                self._cond.wait()
            return self._free.pop(0)

    def release(self, slot: int) -> None:
        with self._cond:
            self._free.append(slot)
            self._free.sort()
            self._cond.notify()


_SLOTS = _Slots(UID_SPAN)
_PROBE_LOCK = threading.Lock()
_isolation: Isolation | None = None


def _candidates() -> list[Isolation]:
    unshare = shutil.which("unshare")
    if not unshare:
        return []
    if os.geteuid() == 0:  # never a user namespace here: its root would be the host's root
        return [Isolation("full", (unshare, *NAMESPACE_FLAGS))]
    return [Isolation("userns", (unshare, "--user", "--map-root-user", *NAMESPACE_FLAGS))]


def _probe(candidate: Isolation, cfg: PythonToolConfig) -> bool:
    try:
        return _launch("print(6 * 7)", cfg, candidate).text == "42\n"
    except OSError:
        return False


def isolation() -> Isolation:
    """The strongest level that really runs a program here (probed once, by running one)."""
    global _isolation
    with _PROBE_LOCK:
        if _isolation is None:
            probe = PythonToolConfig(timeout_s=30)
            works = (c for c in _candidates() if _probe(c, probe))
            _isolation = next(works, Isolation("none", ()))
            if _isolation.level == "userns":
                log.warning(
                    "python sandbox: not root, so code keeps the caller's uid (namespaces still used)"
                )
            elif _isolation.level == "none":
                log.warning(
                    "python sandbox: no usable `unshare`, so sandboxed code can use the network and a "
                    "daemon it starts may outlive the call; run as root or allow user namespaces"
                )
        return _isolation


@functools.lru_cache(maxsize=1)
def interpreter_dirs() -> list[str]:
    """The interpreter's own directories (a virtual environment, its base installation): the
    only host paths the sandbox adds to its fixed allow-list."""
    exe = sys.executable
    paths = (sys.base_prefix, sys.prefix, os.path.dirname(exe), os.path.dirname(os.path.realpath(exe)))
    return sorted({os.path.realpath(p) for p in paths})


def sandbox_uid_block(uid_base: int) -> int:
    """First uid of this process's block of UID_SPAN sandbox uids (disjoint across live pids)."""
    return uid_base + (os.getpid() % PID_BLOCKS) * UID_SPAN


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:  # exited while we looked
            continue
    return pids


def _own_task_count() -> int:
    """Threads of all processes of our uid: the base RLIMIT_NPROC is counted from."""
    uid, total = os.getuid(), 0
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                total += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return total


def _kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if uid is None:
        return
    deadline = time.monotonic() + 5.0
    while (pids := _uid_processes(uid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    if pids:
        log.error("python sandbox: uid %d still has processes %s after SIGKILL", uid, pids)


def _feed(stream, data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except OSError:  # the code exited before reading everything; nothing to do
        pass


class _HeadTail:
    """The first and last `half` bytes of a stream, and how many bytes fell between them."""

    def __init__(self, half: int):
        self.half, self.head, self.tail, self.dropped = half, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[room:] if room > 0 else chunk
        if len(self.tail) > self.half:
            self.dropped += len(self.tail) - self.half
            del self.tail[: len(self.tail) - self.half]

    def text(self, max_chars: int) -> str:
        """Decoded output; longer than max_chars (or with bytes dropped) it keeps its head and
        its tail, where a traceback's last line is."""
        head, tail = self.head.decode("utf-8", "replace"), self.tail.decode("utf-8", "replace")
        if not self.dropped and len(head) + len(tail) <= max_chars:
            return head + tail
        whole = head + tail
        keep = max_chars // 2
        return f"{whole[:keep]}\n... [output truncated] ...\n{whole[-keep:]}"


def _collect(proc: subprocess.Popen, deadline: float, output: _HeadTail) -> bool:
    """Read merged stdout/stderr into `output` until EOF or the deadline; True if it timed out."""
    fd = proc.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(min(left, 0.1) * 1000):
            if proc.poll() is not None:  # exited, but an escaped child holds the pipe (level none)
                return False
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                return False
            except subprocess.TimeoutExpired:
                return True
        output.add(chunk)
    return True


@dataclass(frozen=True)
class _Ending:
    exit_code: int
    signum: int
    raised: bool  # ended by an uncaught exception whose traceback is in the output


def _read_status(fd: int, fallback: int) -> _Ending:
    """How the code's process ended, as its supervisor reported it."""
    try:
        os.set_blocking(fd, False)  # never wait on a supervisor that died without writing
        status = json.loads(os.read(fd, 4096) or b"null")
    except (OSError, ValueError):
        status = None
    finally:
        os.close(fd)
    if not isinstance(status, dict):  # the supervisor itself died: only the launcher's status is left
        return _Ending(fallback, -fallback if fallback < 0 else 0, False)
    return _Ending(int(status["exit"]), int(status["signal"]), bool(status["raised"]))


def _describe_exit(ending: _Ending) -> str:
    if not ending.signum:
        return f"exit status {ending.exit_code}"
    try:
        name = signal.Signals(ending.signum).name
    except ValueError:
        name = f"signal {ending.signum}"
    return f"killed by {name}" + SIGNAL_CAUSES.get(ending.signum, "")


def run_sandboxed(code: str, cfg: PythonToolConfig) -> ToolResult:
    """Execute `code`; the result text is its stdout+stderr (truncated). Never raises on the
    code's behaviour; raises OSError only if the interpreter cannot be started at all."""
    iso = isolation()
    if iso.level == "none" and cfg.require_netns:
        msg = "python sandbox: tools.python.require_netns is set but no network namespace is available"
        return ToolResult(text=msg, error=msg)
    return _launch(code, cfg, iso)


def _launch(code: str, cfg: PythonToolConfig, iso: Isolation) -> ToolResult:
    slot = _SLOTS.acquire()
    try:
        return _launch_as(code, cfg, iso, slot)
    finally:
        _SLOTS.release(slot)  # every process of the slot's uid is gone by now


def _runner_config(
    cfg: PythonToolConfig, iso: Isolation, uid: int | None, workdir: str | None, status_fd: int
):
    return {
        "private_fs": iso.level != "none",
        "workdir": workdir,
        "uid": uid,
        "allow": interpreter_dirs(),
        "tmpfs_mb": cfg.tmpfs_mb,
        "cpu_s": cfg.cpu_s,
        "memory_mb": cfg.memory_mb,
        "max_file_mb": cfg.max_file_mb,
        "max_open_files": cfg.max_open_files,
        "nproc": cfg.max_processes if uid is not None else _own_task_count() + cfg.max_processes,
        "status_fd": status_fd,
    }


def _launch_as(code: str, cfg: PythonToolConfig, iso: Isolation, slot: int) -> ToolResult:
    start = time.monotonic()
    uid = sandbox_uid_block(cfg.uid_base) + slot if iso.level == "full" else None
    host_dir = None if iso.level != "none" else tempfile.mkdtemp(prefix="arpo-py-")
    status_r, status_w = os.pipe()
    runner_cfg = json.dumps(_runner_config(cfg, iso, uid, host_dir, status_w))
    argv = [*iso.prefix, sys.executable, "-I", "-u", "-X", "utf8", "-c", RUNNER_SOURCE, runner_cfg]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=host_dir or "/",
            env=dict(SAFE_ENV, HOME=host_dir or "/tmp/work"),
            pass_fds=(status_w,),
        )
    except OSError:
        os.close(status_r)
        if host_dir:
            shutil.rmtree(host_dir, ignore_errors=True)
        raise
    finally:
        os.close(status_w)
    output = _HeadTail(2 * cfg.max_output_chars)
    try:
        threading.Thread(target=_feed, args=(proc.stdin, code.encode()), daemon=True).start()
        timed_out = _collect(proc, start + cfg.timeout_s, output)
    finally:
        _kill_everything(proc, uid)
        proc.stdout.close()
        if host_dir:
            shutil.rmtree(host_dir, ignore_errors=True)
    ending = _read_status(status_r, proc.returncode)
    result = _result(output.text(cfg.max_output_chars), timed_out, ending, cfg)
    result.latency_s = time.monotonic() - start
    return result


def _result(text: str, timed_out: bool, ending: _Ending, cfg: PythonToolConfig) -> ToolResult:
    error = None
    if timed_out:
        error = f"timed out after {cfg.timeout_s:g} s"
        text = _append_line(text, f"TimeoutError: {error}")
    elif ending.exit_code != 0:
        error = _describe_exit(ending)
        if not ending.raised:  # a traceback already tells the model what happened; a status does not
            text = _append_line(text, f"Error: {error}")
        elif text.strip():
            error += f": {text.strip().splitlines()[-1]}"
    return ToolResult(text=text, error=error, timed_out=timed_out)


def _append_line(text: str, line: str) -> str:
    return (text if not text or text.endswith("\n") else text + "\n") + line
