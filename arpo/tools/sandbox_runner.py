"""Bootstrap of a sandboxed Python call. Not imported: its source is passed to `python -c` and runs
as the first process of the sandbox (PID 1 of its own pid/net/mount namespaces when available).

Reads the model's code from stdin, then (still root inside the namespaces) makes every host mount
read-only, gives itself a private tmpfs /tmp as working directory, hides the other world-writable
directories behind private tmpfs, exposes the interpreter's directories when an ancestor is closed
to other users, drops to the sandbox uid, applies rlimits, and runs the code, printing the repr of
a final expression as a REPL does.
Only the standard library may be used here.
"""

import ast
import builtins
import ctypes
import json
import linecache
import os
import resource
import sys
import traceback

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MNT_DETACH = 2
HIDDEN_DIRS = ("/var/tmp", "/dev/shm", "/run/lock")  # world-writable on most hosts besides /tmp


def _mount(libc, source, target, fstype, flags, data):
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {fstype or 'bind'} on {target}")


def _mount_points():
    with open("/proc/self/mounts") as f:
        return [line.split()[1].replace("\\040", " ") for line in f]


def _interpreter_dirs_to_keep():
    """The interpreter's own directories that the private tmpfs mounts would hide (a virtual
    environment under /tmp, say), held open so that they can be bound back afterwards."""
    covered = ("/tmp", *HIDDEN_DIRS)
    dirs = sorted(
        {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    )
    dirs = [d for d in dirs if any(d == c or d.startswith(c + "/") for c in covered)]
    outermost = [d for d in dirs if not any(d.startswith(o + "/") for o in dirs)]
    return [(d, os.open(d, os.O_PATH)) for d in outermost]


def _private_filesystem(cfg):
    libc = ctypes.CDLL(None, use_errno=True)
    keep = _interpreter_dirs_to_keep()
    for point in _mount_points():  # the host's files become read-only for the code
        libc.mount(b"none", point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
    _mount(libc, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmpfs_mb']}m,mode=1777")
    for i, (ancestor, targets) in enumerate(cfg["expose"]):
        holds = []
        for j, target in enumerate(targets):
            hold = f"/tmp/.hold{i}_{j}"
            os.mkdir(hold)
            _mount(libc, target, hold, "", MS_BIND | MS_REC, "")
            holds.append(hold)
        _mount(libc, "tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        for hold, target in zip(holds, targets):
            os.makedirs(target, exist_ok=True)
            _mount(libc, hold, target, "", MS_BIND | MS_REC, "")
            libc.mount(b"none", target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            libc.umount2(hold.encode(), MNT_DETACH)
            os.rmdir(hold)
        libc.mount(b"none", ancestor.encode(), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    for d in HIDDEN_DIRS:
        if os.path.isdir(d):
            _mount(libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    for path, fd in keep:
        os.makedirs(path, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", path, "", MS_BIND | MS_REC, "")
        libc.mount(b"none", path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        os.close(fd)
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


def _execute(code, cfg, workdir):
    """The code's process: drop privileges, confine, run."""
    if cfg["uid"] is not None:
        os.chown(workdir, cfg["uid"], cfg["uid"])
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    os.chdir(workdir)
    os.environ["HOME"] = workdir
    _limit(cfg)
    sys.argv = ["<code>"]
    try:
        _run(code)
    except SyntaxError as e:
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        sys.exit(1)
    except Exception as e:  # the model's bug: show its traceback without this file's frames
        frames = e.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != "<code>":
            frames = frames.tb_next
        sys.stderr.write("".join(traceback.format_exception(type(e), e, frames)))
        sys.exit(1)


def main():
    cfg = json.loads(sys.argv[1])
    code = sys.stdin.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    workdir = _private_filesystem(cfg) if cfg["private_fs"] else cfg["workdir"]
    # This process stays a supervisor the code cannot signal (another uid, or PID 1): it reports
    # how the code ended on the status pipe, which the code never holds.
    child = os.fork()
    if child == 0:
        os.close(cfg["status_fd"])
        _execute(code, cfg, workdir)
        return
    _, status = os.waitpid(child, 0)
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + signum
    os.write(cfg["status_fd"], json.dumps({"exit": exit_code, "signal": signum}).encode())
    os._exit(exit_code)


main()
