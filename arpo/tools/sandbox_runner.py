"""Bootstrap of a sandboxed Python call. Not imported: its source is passed to `python -c` and runs
as the first process of the sandbox (PID 1 of its own pid/net/mount namespaces when available).

Reads the model's code from stdin, then (still root inside the namespaces) builds a new root file
system from an allow-list and moves into it: the system's programs and libraries (/usr and the
/bin, /lib links), the interpreter's own directories, `ld.so.cache` and `localtime` from /etc, all
read-only; a few harmless devices; this namespace's /proc; a private tmpfs /tmp (the working
directory) and /dev/shm. Nothing else of the host is there. Then it drops to the sandbox uid,
applies rlimits and runs the code, printing the repr of a final expression as a REPL does.
While the code runs it stays its supervisor: it reports how the code ended on the status pipe,
and if the trainer dies first (the pipe's read end closes) it ends the whole sandbox.
Only the standard library may be used here.
"""

import ast
import builtins
import ctypes
import json
import linecache
import os
import platform
import resource
import select
import signal
import sys
import traceback

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
SYSTEM_PATHS = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/localtime",
)  # fmt: skip
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
STAGE = "/tmp"  # where the new root is assembled (a tmpfs over the namespace's view of /tmp)
WRITABLE = ("/tmp", "/dev/shm")

libc = ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype, flags, data=""):
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {fstype or 'bind'} on {target}")


def _outermost(paths):
    paths = sorted(set(paths))
    return [p for p in paths if not any(p.startswith(o.rstrip("/") + "/") for o in paths if o != p)]


def _hold(paths):
    """(path, O_PATH fd or symlink text) for each allowed path that exists, taken before the
    staging tmpfs covers /tmp (where a virtual environment may live)."""
    held = []
    for path in _outermost(paths):
        if os.path.islink(path):
            held.append((path, os.readlink(path)))
        elif os.path.exists(path):
            held.append((path, os.open(path, os.O_PATH)))
    return held


def _place(path, what):
    """Put one held path into the staged root at the same place."""
    target = STAGE + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if isinstance(what, str):
        os.symlink(what, target)
        return
    if os.path.isdir(f"/proc/self/fd/{what}"):
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "w").close()
    _mount(f"/proc/self/fd/{what}", target, "", MS_BIND | MS_REC)
    os.close(what)


def _pivot():
    os.chdir(STAGE)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None or libc.syscall(number, b".", b".") != 0:
        raise OSError(ctypes.get_errno(), f"pivot_root on {platform.machine()}")
    libc.umount2(b".", MNT_DETACH)  # the old root, stacked on the new one by pivot_root(".", ".")
    os.chdir("/")


def _private_filesystem(cfg):
    held = _hold([*SYSTEM_PATHS, *cfg["allow"], *DEVICES])
    _mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.mkdir(STAGE + "/tmp")
    _mount("tmpfs", STAGE + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmpfs_mb']}m,mode=1777")
    os.makedirs(STAGE + "/dev/shm")
    _mount("tmpfs", STAGE + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{STAGE}/dev/{name}")
    os.makedirs(STAGE + "/proc")
    _mount("/proc", STAGE + "/proc", "", MS_BIND | MS_REC)
    for path, what in held:
        _place(path, what)
    _pivot()
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    for point in points:  # everything but the two private tmpfs becomes read-only for the code
        if point not in WRITABLE:
            libc.mount(b"none", point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
    os.mkdir("/tmp/work", 0o700)
    return "/tmp/work"


def _limit(cfg):
    mb = 1 << 20
    # CPU: the soft limit sends SIGXCPU (a clear cause); the hard one a second later SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 1))
    for name, value in (
        ("RLIMIT_AS", cfg["memory_mb"] * mb),
        ("RLIMIT_FSIZE", cfg["max_file_mb"] * mb),
        ("RLIMIT_NOFILE", cfg["max_open_files"]),
        ("RLIMIT_NPROC", cfg["nproc"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def _run(code):
    linecache.cache["<code>"] = (len(code), None, code.splitlines(True), "<code>")
    tree = ast.parse(code, "<code>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    scope = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(tree, "<code>", "exec"), scope)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<code>", "eval"), scope)
        if value is not None:
            print(repr(value))


def _execute(code, cfg, workdir, raised_fd):
    """The code's process: drop privileges, confine, run."""
    if cfg["uid"] is not None:
        os.chown(workdir, cfg["uid"], cfg["uid"])
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the supervisor (set after setuid,
    # which clears it)
    os.chdir(workdir)
    os.environ["HOME"] = workdir
    _limit(cfg)
    sys.argv = ["<code>"]
    try:
        _run(code)
    except SyntaxError as e:
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        _exit_raised(raised_fd)
    except Exception as e:  # the model's bug: show its traceback without this file's frames
        frames = e.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != "<code>":
            frames = frames.tb_next
        sys.stderr.write("".join(traceback.format_exception(type(e), e, frames)))
        _exit_raised(raised_fd)


def _exit_raised(raised_fd):
    """Exit 1 after a traceback, telling the supervisor so (the output already explains it)."""
    os.write(raised_fd, b"1")
    sys.exit(1)


def _wait(child, status_fd):
    """Wait for the code's process. If the trainer is gone first (the read end of the status pipe
    closed: whatever killed it), end the sandbox: as PID 1 of its namespace, this process's exit
    kills every process in it; without namespaces, the process group goes."""
    try:
        child_fd, timeout = os.pidfd_open(child), None
    except (AttributeError, OSError):  # old kernel: poll the child instead
        child_fd, timeout = None, 50
    poller = select.poll()
    poller.register(status_fd, 0)  # POLLERR: no reader left
    if child_fd is not None:
        poller.register(child_fd, select.POLLIN)
    while True:
        if any(fd == status_fd for fd, _ in poller.poll(timeout)):
            os.killpg(0, signal.SIGKILL)
            os._exit(137)
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return status


def main():
    cfg = json.loads(sys.argv[1])
    code = sys.stdin.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    workdir = _private_filesystem(cfg) if cfg["private_fs"] else cfg["workdir"]
    raised_r, raised_w = os.pipe()
    # This process stays a supervisor the code cannot signal (another uid, or PID 1): it reports
    # how the code ended on the status pipe, which the code never holds.
    child = os.fork()
    if child == 0:
        os.close(cfg["status_fd"])
        os.close(raised_r)
        _execute(code, cfg, workdir, raised_w)
        return
    os.close(raised_w)
    status = _wait(child, cfg["status_fd"])
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + signum
    os.set_blocking(raised_r, False)  # a grandchild may still hold the write end
    try:
        raised = os.read(raised_r, 1) == b"1"
    except BlockingIOError:
        raised = False
    report = {"exit": exit_code, "signal": signum, "raised": raised}
    os.write(cfg["status_fd"], json.dumps(report).encode())
    os._exit(exit_code)


main()
