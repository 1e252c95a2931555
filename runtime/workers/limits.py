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
- when the pool runs as root and isolation is on: private ipc, uts and network
  namespaces (only a down loopback: every connect fails), and where the zygote
  prepared them a private pid namespace (the worker is pid 1 and alone), a private
  mount namespace over the zygote's read-only tree with an empty /tmp of its own, and
  its slot's cgroups (memory, pids, cpu); then the capability bounding set emptied,
  no supplementary groups, and a uid/gid of its own from a range that no one else
  uses, so workers of different tenants cannot signal or trace each other. The drop
  is verified (setuid(0) must fail) or the worker exits;
- last, on every path, the seccomp allowlist (seccomp.py), so everything above was
  done with the whole kernel interface and nothing after it has more than the list.

RLIMIT_CPU's SIGXCPU would be ignored by a worker that is pid 1 of its namespace
(init ignores default-action signals), so it is pointed at libc's _exit: the worker
exits with EXIT_CPU (the signal's number), which the pool reads as a CPU timeout.

Not root (or isolation off): no namespace, uid change or cgroup is possible, so the
worker keeps the server's uid, network and file system view; the seccomp filter, the
rlimits, the prctls and the sandbox policy stand in the way (README, "Security model:
the worker's layers").
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.workers import cgroups, namespaces

if TYPE_CHECKING:
    from runtime.workers.seccomp import Filter

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_MAX = 64  # the drop loop stops at the first capability the kernel does not know
IPC_FD = 3
EXIT_CPU = int(signal.SIGXCPU)  # _exit is the SIGXCPU handler: its argument is the signal number

_libc = ctypes.CDLL(None, use_errno=True)  # in the zygote: a worker opens nothing to find it
_libc.signal.restype = ctypes.c_void_p
_libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
_EXIT_ADDRESS = ctypes.cast(_libc._exit, ctypes.c_void_p).value


class IsolationError(Exception):
    """The worker could not put its confinement in place; it must not run."""


@dataclass(frozen=True)
class WorkerLimits:
    memory_mb: int  # hard RLIMIT_AS for the worker's whole life
    open_files: int
    isolate: bool  # network namespace + own uid (only possible as root)
    uid: int | None = None  # the uid/gid to switch to when isolating


@dataclass(frozen=True)
class Confinement:
    """What the zygote prepared for its workers besides the rlimits (runtime/workers/jail.py)."""

    namespaces: bool = False  # ipc, uts, net (isolating as root)
    mount: bool = False  # the zygote's read-only tree is in place: a private /tmp too
    seccomp: Filter | None = None
    devnull: int | None = None  # /dev/null, opened before the zygote's pivot
    cgroup_fds: tuple[int, ...] = ()  # the slot's cgroup.procs
    legacy: bool = False  # only the layers before the jail (the benchmark's baseline): netns, uid


def _libc_call(name: str, *args) -> None:
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise IsolationError(f"{name} failed: {os.strerror(err)}")


def confine(ipc_fd: int, limits: WorkerLimits, jail: Confinement | None = None) -> dict:
    """Confine the current (freshly forked) process; return facts for 'ready'.

    Raises IsolationError when a required step fails: the caller exits.
    """
    jail = jail or Confinement(namespaces=limits.isolate)
    if limits.isolate:
        if os.geteuid() != 0:
            raise IsolationError("isolation needs root")
        if limits.uid is None or limits.uid <= 0:
            raise IsolationError("no uid to switch to")
        try:
            # Before any descriptor moves: the cgroup descriptors may sit where fd 3 goes.
            if jail.namespaces:
                namespaces.enter_worker_namespaces(mount=jail.mount, network_only=jail.legacy)
            cgroups.join(list(jail.cgroup_fds))
        except OSError as exc:
            raise IsolationError(exc.strerror or str(exc)) from exc

    # Threat: inherited descriptors (the zygote's control socket, other
    # workers' sockets). Keep exactly the IPC socket, as fd 3.
    devnull = jail.devnull if jail.devnull is not None else os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if ipc_fd != IPC_FD:
        os.dup2(ipc_fd, IPC_FD, inheritable=False)
    os.closerange(IPC_FD + 1, _max_fd())
    os.environ.clear()

    # A write past RLIMIT_FSIZE should fail with EFBIG, not kill the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    _libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc_call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)

    if limits.isolate:
        if not jail.legacy:
            _drop_capabilities()  # needs CAP_SETPCAP: before the uid switch
        uid = limits.uid
        assert uid is not None  # checked above: isolating always has a uid
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
    if not jail.legacy and _libc.signal(signal.SIGXCPU, _EXIT_ADDRESS) == ctypes.c_void_p(-1).value:  # SIG_ERR
        raise IsolationError("the CPU limit's signal handler could not be set")
    if jail.seccomp is not None:
        try:
            jail.seccomp.install()  # last: nothing after this has more than the allowlist
        except OSError as exc:
            raise IsolationError(exc.strerror or str(exc)) from exc
    netns = limits.isolate and jail.namespaces
    return {"uid": os.getuid(), "gid": os.getgid(), "netns": netns, "seccomp": jail.seccomp is not None}


def _drop_capabilities() -> None:
    """Empty the bounding set (what an exec could ever grant) and the ambient set."""
    for cap in range(_CAP_MAX):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the last capability this kernel has
                break
            raise IsolationError(f"dropping capability {cap} failed: {os.strerror(ctypes.get_errno())}")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL on old kernels: none to clear


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
    its own budget. Memory: the job's memory, never above the limit fixed at
    spawn, as both the soft and the hard address-space limit, so code that
    escaped the language layer cannot raise it (the pool reuses a worker only
    for jobs of the same memory limit: pool.Binding).
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft_cpu = math.ceil(usage.ru_utime + usage.ru_stime) + math.ceil(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft_cpu, resource.RLIM_INFINITY))
    memory = min(memory_mb, hard_memory_mb) * 1024 * 1024
    if resource.getrlimit(resource.RLIMIT_AS) != (memory, memory):
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
