"""The python sandbox against hostile programs: each must end in a clean result, leave no process
behind and leave the host untouched. All programs run concurrently through the executor."""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from arpo.config.tools import PythonToolConfig
from arpo.tools.base import ToolCall
from arpo.tools.executor import ToolExecutor
from arpo.tools.python_tool import PythonTool
from arpo.tools.registry import ToolRegistry
from arpo.tools.sandbox import (
    PID_BLOCKS,
    UID_SPAN,
    interpreter_dirs,
    isolation,
    run_sandboxed,
    sandbox_uid_block,
)

ROOT = Path(__file__).resolve().parents[1]
MARK = f"arpo_sbx_{uuid.uuid4().hex}"  # in the argv of everything the programs spawn, and in file names
SECRET = uuid.uuid4().hex
SENTINEL = ROOT / f".{MARK}.sentinel"
TIMEOUT_S = 2.0
CFG = PythonToolConfig(timeout_s=TIMEOUT_S, cpu_s=10, memory_mb=256, max_processes=32, max_output_chars=500)

needs_namespaces = pytest.mark.skipif(
    isolation().level == "none", reason="no namespaces here: hostile code could kill or reach the host"
)

SPAWN_MARKED = 'os.execv("/bin/sh", ["/bin/sh", "-c", "while :; do sleep 1; done", "MARK"])'

# name -> (code, check(result)); MARK / ROOT / SENTINEL / PORT / TEST_PID are substituted.
HOSTILE = {
    "infinite_loop": ("while True: pass", lambda r: r.timed_out),
    "signals_ignored": (
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True: pass",
        lambda r: r.timed_out,
    ),
    "sleep_forever": ("import time; time.sleep(1000)", lambda r: r.timed_out),
    "fork_bomb": ("import os\nwhile True: os.fork()", lambda r: r.error is not None),
    "fork_sleepers": (
        f"import os\nwhile True:\n    if os.fork() == 0:\n        {SPAWN_MARKED}\n",
        lambda r: r.error is not None,
    ),
    "memory_hog": (
        "x = []\nwhile True: x.append(bytearray(32 * 2**20))",
        lambda r: "MemoryError" in r.text,  # under load the exit may pass the deadline
    ),
    "huge_allocation": ("bytearray(10**12)", lambda r: "MemoryError" in r.error),
    "output_10mb": (
        "import sys; sys.stdout.write('y' * (10 * 2**20))",
        lambda r: r.error is None and len(r.text) < 600 and "truncated" in r.text,
    ),
    "output_flood_forever": ("while True: print('z' * 1000)", lambda r: r.timed_out and len(r.text) < 700),
    "write_host_tmp": ("open('/tmp/MARK', 'w').write('x'); open('/dev/shm/MARK', 'w').write('x')", None),
    "write_repo": ("open('ROOT/MARK', 'w').write('x')", lambda r: r.error is not None),
    "overwrite_world_writable_file": ("open('SENTINEL', 'w').write('hacked')", lambda r: r.error is not None),
    "delete_repo_file": ("import os; os.remove('SENTINEL')", lambda r: r.error is not None),
    "env_secrets": (
        "import os\nprint(dict(os.environ))\nfor p in os.listdir('/proc'):\n    try:\n"
        "        print(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass",
        lambda r: SECRET not in r.text,
    ),
    "socket_localhost": (
        "import socket; socket.create_connection(('127.0.0.1', PORT), timeout=1)",
        lambda r: r.error is not None,
    ),
    "socket_outside": (
        "import socket; socket.create_connection(('1.1.1.1', 53), timeout=1)",
        lambda r: r.error is not None,
    ),
    "dns_lookup": ("import socket; socket.getaddrinfo('example.com', 80)", lambda r: r.error is not None),
    "kill_parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(TEST_PID, signal.SIGKILL)",
        lambda r: r.error is not None,
    ),
    "kill_everything": ("import os, signal; os.kill(-1, signal.SIGKILL)", None),
    "daemon": (
        f"import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        {SPAWN_MARKED}\n"
        "    os._exit(0)\nprint('spawned')",
        lambda r: r.error is None and "spawned" in r.text,
    ),
    "subprocess_left_running": (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', 'MARK'])\nprint('started')",
        lambda r: r.error is None and "started" in r.text,
    ),
    "huge_recursion": (
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)",
        lambda r: r.error is not None,
    ),
    "stdin_read": ("input()", lambda r: "EOFError" in r.error),
    "delete_cwd": ("import os, shutil; shutil.rmtree(os.getcwd()); print('gone')", None),
    "os_exit": (
        "print('bye', flush=True); import os; os._exit(3)",
        lambda r: r.error.startswith("exit status 3"),
    ),
    "thread_bomb": (
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()",
        lambda r: r.error is not None,
    ),
    "fd_exhaustion": (
        "files = []\nwhile True: files.append(open('/dev/null'))",
        lambda r: "Too many open" in r.text,
    ),
    "huge_file": ("open('big', 'wb').write(b'0' * (100 * 2**20))", lambda r: r.error is not None),
    "closed_stdout_loop": ("import os; os.close(1); os.close(2)\nwhile True: pass", lambda r: r.timed_out),
    "become_root": ("import os; os.setuid(0)", lambda r: "PermissionError" in r.error),
}


def _substitute(code: str, port: int) -> str:
    for key, value in (("MARK", MARK), ("ROOT", str(ROOT)), ("SENTINEL", str(SENTINEL))):
        code = code.replace(key, value)
    return code.replace("PORT", str(port)).replace("TEST_PID", str(os.getpid()))


def _survivors() -> list[int]:
    """Processes that carry the marker or run under this test process's sandbox uids."""
    low = sandbox_uid_block(CFG.uid_base)
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if MARK.encode() in cmdline or low <= uid < low + UID_SPAN:
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def battery():
    SENTINEL.write_text("original")
    SENTINEL.chmod(0o666)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    os.environ["ARPO_SANDBOX_TEST_SECRET"] = SECRET
    try:
        registry = ToolRegistry([PythonTool(CFG)])
        with ToolExecutor(registry, workers=8) as executor:
            futures = {
                name: executor.submit(
                    ToolCall("python", {"code": _substitute(code, server.getsockname()[1])})
                )
                for name, (code, _) in HOSTILE.items()
            }
            results = {name: f.result() for name, f in futures.items()}
        try:
            server.accept()
            local_connection = True
        except BlockingIOError:
            local_connection = False
        yield results, local_connection, SENTINEL.read_text() if SENTINEL.exists() else None
    finally:
        del os.environ["ARPO_SANDBOX_TEST_SECRET"]
        server.close()
        SENTINEL.unlink(missing_ok=True)


def test_battery_is_large_enough():
    assert len(HOSTILE) >= 20


@needs_namespaces
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_ends_cleanly(battery, name):
    results, _, _ = battery
    result = results[name]
    check = HOSTILE[name][1]
    assert result.latency_s < TIMEOUT_S + 3.0, (name, result)
    if result.timed_out:
        assert result.error and "timed out" in result.error
    if check is not None:
        assert check(result), (name, result)


@needs_namespaces
def test_no_process_survives_the_battery(battery):
    assert _survivors() == []


@needs_namespaces
def test_host_untouched_by_the_battery(battery):
    _, local_connection, sentinel_text = battery
    assert sentinel_text == "original"
    assert not local_connection
    for path in (Path("/tmp") / MARK, Path("/dev/shm") / MARK, ROOT / MARK, ROOT / "big"):
        assert not path.exists(), path


def test_last_expression_is_printed_as_repr():
    r = run_sandboxed("x = 6\nprint('side')\n'abc' * 2", CFG)
    assert r.error is None and r.text == "side\n'abcabc'\n"
    assert run_sandboxed("x = [1, 2]\nx.append(3)", CFG).text == ""  # a None value prints nothing
    assert run_sandboxed("def f():\n    return {'a': 1}\nf()", CFG).text == "{'a': 1}\n"


def test_traceback_shows_only_the_model_code():
    r = run_sandboxed("def g(y):\n    return 1 / y\ng(0)", CFG)
    assert r.error == "exit status 1: ZeroDivisionError: division by zero"
    assert 'File "<code>", line 2, in g' in r.text and "sandbox_runner" not in r.text and "_run" not in r.text
    assert run_sandboxed("def (:", CFG).error.startswith("exit status 1: SyntaxError")


def test_timeout_keeps_partial_output():
    r = run_sandboxed("import time\nprint('before', flush=True)\ntime.sleep(60)", CFG)
    assert r.timed_out and r.text.startswith("before\n") and "TimeoutError" in r.text


def test_cpu_limit_kills_busy_code():
    cfg = PythonToolConfig(timeout_s=20, cpu_s=1, memory_mb=256)
    r = run_sandboxed("while True: pass", cfg)
    assert not r.timed_out and r.error == "killed by SIGXCPU (CPU time limit)"


@needs_namespaces
def test_each_call_gets_a_fresh_private_workdir():
    first = run_sandboxed("import os; open('state', 'w').write('1'); os.getcwd()", CFG)
    second = run_sandboxed("import os; os.listdir('.')", CFG)
    assert first.error is None and second.text == "[]\n"


def test_require_netns_refuses_weak_isolation(monkeypatch):
    import arpo.tools.sandbox as sandbox

    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation("none", ()))
    cfg = PythonToolConfig(require_netns=True)
    r = sandbox.run_sandboxed("print(1)", cfg)
    assert r.error is not None and "require_netns" in r.error


def test_weak_isolation_still_runs_and_cleans_its_workdir(monkeypatch, tmp_path):
    import arpo.tools.sandbox as sandbox

    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation("none", ()))
    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "work"))
    (tmp_path / "work").mkdir()
    r = sandbox.run_sandboxed("import os; open('f', 'w').write('x'); os.getcwd()", CFG)
    assert r.error is None and r.text == f"{str(tmp_path / 'work')!r}\n"
    assert not (tmp_path / "work").exists()


def test_silent_failure_shows_the_exit_status():
    assert run_sandboxed("import sys; sys.exit(3)", CFG).text == "Error: exit status 3"
    r = run_sandboxed("print('partial'); raise SystemExit(4)", CFG)
    assert r.text == "partial\nError: exit status 4" and r.error == "exit status 4"


def test_truncation_keeps_the_head_and_the_last_line():
    r = run_sandboxed("print('first line')\nprint('x' * 20000)\nraise ValueError('the last line')", CFG)
    assert r.text.startswith("first line\n") and "[output truncated]" in r.text
    assert r.text.endswith("ValueError: the last line\n") and len(r.text) < CFG.max_output_chars + 100
    assert r.error == "exit status 1: ValueError: the last line"


@pytest.fixture
def host_secrets():
    """A world-readable dataset file, a run directory with a secret, and a 0777 unix socket server,
    all outside the directories a weaker sandbox would hide (/tmp, /dev/shm, ...)."""
    base = ROOT / f".{MARK}.host"
    (base / "run").mkdir(parents=True)
    (base / "data.jsonl").write_text(json.dumps({"question": "q", "answer": SECRET}) + "\n")
    (base / "run" / "config.yaml").write_text(f"api_key: {SECRET}\n")
    for path, mode in ((base, 0o777), (base / "run", 0o755), (base / "data.jsonl", 0o644)):
        path.chmod(mode)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(base / "s.sock"))
    (base / "s.sock").chmod(0o777)
    server.listen(4)
    server.setblocking(False)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0{MARK}")
    abstract.listen(4)
    abstract.setblocking(False)
    try:
        yield base, (server, abstract)
    finally:
        server.close()
        abstract.close()
        shutil.rmtree(base)


PROBE_HOST = """
import os, socket
for path in ("BASE/data.jsonl", "BASE/run/config.yaml", "SHARED"):
    try:
        print("read", path, open(path).read()[:80]) if os.path.isfile(path) else os.listdir(path)
        print("reached", path)
    except OSError as e:
        print("hidden", path, type(e).__name__)
for address in ("BASE/s.sock", "\\0MARK"):
    try:
        socket.socket(socket.AF_UNIX).connect(address)
        print("connected")
    except OSError as e:
        print("no socket", type(e).__name__)
"""


@needs_namespaces
def test_host_files_sockets_and_data_are_out_of_reach(host_secrets):
    base, servers = host_secrets
    shared = ROOT.parent / "shared" / "data"
    code = PROBE_HOST.replace("BASE", str(base)).replace("SHARED", str(shared)).replace("MARK", MARK)
    r = run_sandboxed(code, CFG)
    assert r.error is None and SECRET not in r.text and "reached" not in r.text, r.text
    assert r.text.count("hidden") == 3 and r.text.count("no socket") == 2, r.text
    for server in servers:
        with pytest.raises(BlockingIOError):
            server.accept()


def _allowed_top_level(interpreter_tops: set[str]) -> list[str]:
    system = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"}
    return sorted((system & set(os.listdir("/"))) | interpreter_tops | {"dev", "proc", "tmp"})


@needs_namespaces
def test_root_holds_only_the_allow_list():
    r = run_sandboxed("import os; print(sorted(os.listdir('/'))); print(sorted(os.listdir('/etc')))", CFG)
    expected = _allowed_top_level({p.split("/")[1] for p in interpreter_dirs()})
    etc = sorted({"ld.so.cache", "localtime"} & set(os.listdir("/etc")))
    assert r.text == f"{expected}\n{etc}\n", r.text


TRAINER = """
import sys, time
from arpo.tools.base import ToolCall
from arpo.config.tools import PythonToolConfig
from arpo.tools.executor import ToolExecutor
from arpo.tools.python_tool import PythonTool
from arpo.tools.registry import ToolRegistry

cfg = PythonToolConfig(timeout_s=600, uid_base=int(sys.argv[1]))
executor = ToolExecutor(ToolRegistry([PythonTool(cfg)]), workers=2)
for code in sys.argv[2:]:
    executor.submit(ToolCall("python", {"code": code}))
time.sleep(600)
"""


def _sandbox_processes(uid_low: int) -> list[int]:
    """Processes carrying the marker, running as one of the block's uids, or supervising them."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        runner_uid = re.search(r'"uid": (\d+)', cmdline)
        uids = [uid, int(runner_uid.group(1))] if runner_uid else [uid]
        if MARK in cmdline or any(uid_low <= u < uid_low + UID_SPAN for u in uids):
            found.append(int(entry))
    return found


@needs_namespaces
def test_tool_processes_die_with_a_killed_trainer():
    uid_base = 2_000_000 + random.randrange(1 << 20)
    sleeper = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', 'import time; time.sleep(900)', '{MARK}'])"
    )
    daemon = (
        f"import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        {SPAWN_MARKED}\n"
        "    os._exit(0)\nimport time; time.sleep(900)"
    ).replace("MARK", MARK)
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(uid_base), sleeper, daemon])
    uid_low = uid_base + (trainer.pid % PID_BLOCKS) * UID_SPAN
    try:
        for _ in range(600):  # both calls are running when their marked processes exist
            marked = [
                p
                for p in _sandbox_processes(uid_low)
                if MARK.encode() in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
            if len(marked) >= 2:
                break
            time.sleep(0.1)
        assert len(marked) >= 2, "the calls never started"
    finally:
        trainer.kill()
        trainer.wait()
    deadline = time.monotonic() + 5.0
    while _sandbox_processes(uid_low) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes(uid_low) == []


USERNS_PROBE = """
import os, sys
sys.path.insert(0, sys.argv[1])
from arpo.config.tools import PythonToolConfig
from arpo.tools.sandbox import isolation, run_sandboxed

cfg = PythonToolConfig(timeout_s=20)
print(isolation().level)
print(run_sandboxed("import os; sorted(os.listdir('/'))", cfg).text.strip())
print(run_sandboxed(f"open({sys.argv[1] + '/data.jsonl'!r})", cfg).error)
print(run_sandboxed("import sys; sys.exit(3)", cfg).text)
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("setpriv") and os.path.exists("/usr/bin/python3")),
    reason="needs root (to become an unprivileged user), setpriv and a system python3",
)
def test_unprivileged_user_namespace_level_hides_the_host_too():
    """The `userns` level, as a user without privileges gets it: the same allow-list root."""
    copy = Path(tempfile.mkdtemp(prefix="arpo-userns-"))
    try:
        shutil.copytree(ROOT / "arpo" / "tools", copy / "arpo" / "tools")
        (copy / "arpo" / "config").mkdir()
        shutil.copy(ROOT / "arpo" / "config" / "tools.py", copy / "arpo" / "config")
        for package in ("arpo", "arpo/config"):  # without the loader and its third-party imports
            (copy / package / "__init__.py").write_text("")
        (copy / "data.jsonl").write_text(json.dumps({"answer": SECRET}) + "\n")
        subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        out = subprocess.run(
            [*nobody, "/usr/bin/python3", "-I", "-c", USERNS_PROBE, str(copy)],
            capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    finally:
        shutil.rmtree(copy)
    lines = out.stdout.splitlines()
    if lines[:1] == ["none"]:
        pytest.skip("unprivileged user namespaces are not allowed on this host")
    assert lines[0] == "userns", out
    assert lines[1] == str(_allowed_top_level({"usr"})), lines[1]  # /usr/bin/python3 lives in /usr
    assert lines[2].startswith("exit status 1: FileNotFoundError") and lines[3] == "Error: exit status 3"
