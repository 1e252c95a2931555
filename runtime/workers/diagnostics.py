"""Test-only introspection of a confined worker (the "diagnose" op).

Tests must check the OS confinement from *inside* a worker, which user code
cannot do (the sandbox blocks os, socket and resource). So a worker answers
{"op": "diagnose"} frames, but only when the pool was built with
`diagnostics=True`, a constructor flag that production code never sets.
The op is sent by the parent alone (`WorkerPool.diagnose`); nothing user
code can do produces a parent->worker frame, so it is unreachable from a run.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import stat

_RLIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE")


def diagnose(request: dict) -> dict:
    action = request.get("action")
    if action == "signal":  # simulate a crash: SIGSEGV, SIGABRT...
        os.kill(os.getpid(), getattr(signal, request["signal"]))
    if action == "exit":
        os._exit(int(request.get("code", 0)))
    facts: dict = {
        "op": "diagnosis",
        "pid": os.getpid(),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "environ": dict(os.environ),
        "rlimits": {name: list(resource.getrlimit(getattr(resource, name))) for name in _RLIMITS},
        "fds": _open_fds(),
        "hostname": _hostname(),
    }
    port = request.get("connect_port")
    if port is not None:
        facts["connect"] = _try(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close())
    if request.get("try_fork"):
        facts["fork"] = _try(_fork_once)
    if request.get("try_setuid0"):
        facts["setuid0"] = _try(lambda: os.setuid(0))
    if request.get("try_write"):
        facts["write"] = _try(lambda: _write(request["try_write"]))
    return facts


def _open_fds() -> dict:
    """What each open descriptor is, from fstat alone (no /proc in the jail, no readlink
    through the seccomp filter; under the filter fstat is refused too: {}, and the tests
    look from outside, at /proc/PID/fd)."""
    fds = {}
    for fd in range(256):
        try:
            info = os.fstat(fd)
        except PermissionError:  # the seccomp filter: nothing to learn from inside
            return {}
        except OSError:
            continue
        if stat.S_ISSOCK(info.st_mode):
            fds[str(fd)] = f"socket:{info.st_ino}"
        elif stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3):
            fds[str(fd)] = "/dev/null"
        else:
            fds[str(fd)] = f"other:{stat.filemode(info.st_mode)}"
    return fds


def _hostname() -> str | None:
    try:
        return os.uname().nodename
    except OSError:  # refused by the seccomp filter
        return None


def _fork_once() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _write(path: str) -> None:
    with open(path, "w") as handle:
        handle.write("x" * 10)


def _try(action) -> str:
    try:
        action()
    except OSError as exc:
        return f"error: {exc.strerror or exc}"
    return "ok"
