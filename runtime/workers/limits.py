"""OS confinement of a worker process, applied in the child right after fork.

What a worker ends up with (the second line of defence behind the
RestrictedPython policy, Security promise 3):

- only its IPC socket open (as fd 3), with 0/1/2 on /dev/null, and an empty
  environment;
- rlimits: address space = the operator's worker memory (the soft limit is
  lowered per run to the job's own memory), CPU time per run (SIGXCPU a
  second past the run's timeout), no file growth, no core dumps, a few open
  files, no new processes or threads;
- PR_SET_NO_NEW_PRIVS (an exec of a setuid binary gains nothing) and
  PR_SET_DUMPABLE 0 (no core, no ptrace by other processes of its uid);
- when the pool runs as root and isolation is on: a private, empty network
  namespace (only a down loopback: every connect fails), no supplementary
  groups, and a uid/gid of its own from a range that no one else uses, so
  workers of different tenants cannot signal or trace each other. The drop
  is verified (setuid(0) must fail) or the worker exits.

Not root (or isolation off): no network namespace and no uid change are
possible, so the worker keeps the server's uid and the host's network; only
the rlimits, the prctls and the sandbox policy stand in the way.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import signal
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000  # os.CLONE_NEWNET exists only from Python 3.12
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
IPC_FD = 3

_libc = None


class IsolationError(Exception):
    """The worker could not put its confinement in place; it must not run."""


@dataclass(frozen=True)
class WorkerLimits:
    memory_mb: int  # hard RLIMIT_AS for the worker's whole life
    open_files: int
    isolate: bool  # network namespace + own uid (only possible as root)
    uid: int | None = None  # the uid/gid to switch to when isolating


def _libc_call(name: str, *args) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise IsolationError(f"{name} failed: {os.strerror(err)}")


def confine(ipc_fd: int, limits: WorkerLimits) -> dict:
    """Confine the current (freshly forked) process; return facts for 'ready'.

    Raises IsolationError when a required step fails: the caller exits.
    """
    # Threat: inherited descriptors (the zygote's control socket, other
    # workers' sockets). Keep exactly the IPC socket, as fd 3.
    if ipc_fd != IPC_FD:
        os.dup2(ipc_fd, IPC_FD, inheritable=False)
    os.closerange(IPC_FD + 1, _max_fd())
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.environ.clear()

    # A write past RLIMIT_FSIZE should fail with EFBIG, not kill the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    _libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc_call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)

    netns = False
    if limits.isolate:
        if os.geteuid() != 0:
            raise IsolationError("isolation needs root")
        if limits.uid is None or limits.uid <= 0:
            raise IsolationError("no uid to switch to")
        _libc_call("unshare", CLONE_NEWNET)
        netns = True
        uid = limits.uid
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        _verify_unprivileged()

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    # RLIMIT_NPROC counts tasks per real uid and is ignored for root: it
    # only bites after the uid drop (or when the server is not root).
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return {"uid": os.getuid(), "gid": os.getgid(), "netns": netns}


def _verify_unprivileged() -> None:
    if 0 in os.getresuid() or 0 in os.getresgid() or os.getgroups():
        raise IsolationError("privileges were not dropped")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise IsolationError("worker could regain root")


def _max_fd() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def limit_run(timeout_s: float, memory_mb: int, hard_memory_mb: int) -> None:
    """Per-run limits, set by the worker before it runs user code.

    CPU: SIGXCPU one second past the run's own CPU budget (the parent's wall
    clock kills it sooner in most cases; this catches a worker that ignores
    its socket). The hard CPU limit stays unlimited so the next run can set
    its own budget. Memory: the soft address-space limit is the job's
    memory, never above the hard limit fixed at spawn.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft_cpu = math.ceil(usage.ru_utime + usage.ru_stime) + math.ceil(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft_cpu, resource.RLIM_INFINITY))
    memory = min(memory_mb, hard_memory_mb) * 1024 * 1024
    if resource.getrlimit(resource.RLIMIT_AS)[0] != memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, hard_memory_mb * 1024 * 1024))
