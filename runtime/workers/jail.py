"""The zygote's side of the worker jail: which layers apply here, each prepared once.

`Jail.prepare(config)` runs in the zygote after its warm-up and before it serves:

1. seccomp: the allowlist (seccomp.py) is built, and installed once in a throwaway
   child to see that the kernel takes it. It needs no root (only no_new_privs), so it
   applies on every path, isolated or not.
2. isolation (as root, unless turned off): a throwaway child tries the ipc, uts and
   network namespaces and the uid change, exactly as workers do. Refused (a container
   without CAP_SYS_ADMIN): none of the root-only layers below apply.
3. pid namespaces: the zygote's own pid namespace is opened (namespaces.PidNamespaces)
   and one fork into a new one is tried.
4. cgroups: the slots' parent cgroups are made and slot 0 is written (cgroups.py).
5. the mount tree: the zygote pivots into its read-only root (namespaces.build_root),
   after opening what it needs from outside (/dev/null, the pid namespace, cgroups).
6. a last throwaway child confines itself with everything that is on: if that fails,
   the root-only layers are dropped and the reason is reported.

Whatever is not in effect is named with its reason in `layers.missing`; the pool logs it
as a warning and `logic serve` prints it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from runtime.workers import cgroups, namespaces, seccomp
from runtime.workers import limits as oslimits
from runtime.workers.layers import NAMESPACES, Layers


class Jail:
    def __init__(self) -> None:
        self.filter: seccomp.Filter | None = None
        self.seccomp_mode = "off"
        self.isolate = False  # namespaces (ipc, uts, net) + own uid + capabilities dropped
        self.mount = False  # the zygote is inside the read-only tree: a private /tmp per worker
        self.pids: namespaces.PidNamespaces | None = None
        self.cgroups: cgroups.CgroupSlots | None = None
        self.devnull: int | None = None
        self.missing: dict[str, str] = {}
        self.probe_uid: int | None = None
        self.legacy = False

    @classmethod
    def prepare(cls, config: dict) -> Jail:
        jail = cls()
        if config.get("jail", True) is False:  # the benchmark's baseline: the layers before the jail
            jail.legacy = True
            jail.missing["jail"] = "turned off: rlimits, and as root a network namespace and the uid only"
        else:
            jail._prepare_seccomp(config.get("seccomp", "on"))
        jail._prepare_isolation(config)
        config["isolate"] = jail.isolate  # the zygote gives workers a uid only when isolating
        return jail

    # -- what the zygote asks per fork ------------------------------------------------------

    def confinement(self, slot: int) -> oslimits.Confinement:
        """What a worker of `slot` applies to itself (its cgroups made on first use)."""
        cgroup_fds = tuple(self.cgroups.join_fds(slot)) if self.cgroups is not None else ()
        return oslimits.Confinement(
            namespaces=self.isolate,
            mount=self.mount,
            seccomp=self.filter,
            devnull=self.devnull,
            cgroup_fds=cgroup_fds,
            legacy=self.legacy,
        )

    @contextlib.contextmanager
    def forking(self) -> Iterator[None]:
        """Around the zygote's os.fork() of a worker: its own pid namespace, if on."""
        if self.pids is None:
            yield
            return
        with self.pids.next_fork():
            yield

    @property
    def layers(self) -> Layers:
        spaces: tuple[str, ...] = ()
        if self.isolate:
            on = {"mount": self.mount, "pid": self.pids is not None, "ipc": not self.legacy, "uts": not self.legacy}
            on["net"] = True
            spaces = tuple(name for name in NAMESPACES if on[name])
        return Layers(
            seccomp=self.seccomp_mode if self.filter is not None else "off",
            namespaces=spaces,
            uid=self.isolate,
            cgroups=self.cgroups.controllers if self.cgroups is not None and self.isolate else (),
            missing=dict(self.missing),
        )

    def close(self) -> None:
        """At the zygote's exit, once every worker is reaped: remove the cgroups."""
        if self.cgroups is not None:
            self.cgroups.close()
            self.cgroups = None

    # -- preparation --------------------------------------------------------------------------

    def _prepare_seccomp(self, mode: str) -> None:
        if mode == "off":
            self.missing["seccomp"] = "turned off by LOGIC_WORKER_SECCOMP=off"
            return
        why = seccomp.unsupported()
        if why is None:
            candidate = seccomp.Filter(seccomp.program(mode))
            why = _probe(lambda _fd: candidate.install())
            if why is None:
                self.filter, self.seccomp_mode = candidate, mode
                return
        self.missing["seccomp"] = why

    def _prepare_isolation(self, config: dict) -> None:
        wanted = config["isolate"]
        cgroups_wanted = bool(config.get("cgroups", True) and config.get("cgroup_limits"))
        if wanted is False or os.geteuid() != 0:
            why = "isolation is turned off" if wanted is False else "the server does not run as root"
            self._missing_root_layers(why, cgroups_wanted)
            return
        self.probe_uid = int(config["uid_base"])
        refused = namespaces.unsupported() or _probe(self._try_isolation)
        if refused is not None and wanted == "auto":
            self._missing_root_layers(f"the kernel refused the namespaces: {refused}", cgroups_wanted)
            return
        self.isolate = True  # demanded (isolate=True) even if refused: then workers fail to start
        if self.legacy:
            return
        try:
            self.pids = namespaces.PidNamespaces()
            with self.pids.next_fork():
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
            os.waitpid(pid, 0)
        except OSError as exc:
            self.pids = None
            self.missing["pid namespace"] = str(exc.strerror or exc)
        if not cgroups_wanted:
            self.missing["cgroups"] = "turned off by LOGIC_WORKER_CGROUPS=0"
        else:
            try:
                self.cgroups = cgroups.CgroupSlots.open(cgroups.CgroupLimits(**config["cgroup_limits"]))
            except cgroups.CgroupUnavailable as exc:
                self.missing["cgroups"] = f"{exc}; memory is limited by RLIMIT_AS alone"
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            namespaces.build_root(namespaces.tree_sources(namespaces.PROJECT_ROOT))
            self.mount = True
        except OSError as exc:
            self.missing["mount namespace"] = f"building the read-only root failed: {exc.strerror or exc}"
        failed = _probe(self._try_worker, forking=self.forking)
        if failed is not None and wanted == "auto":
            self.isolate = self.mount = False
            self.pids = None
            self.close()
            self._missing_root_layers(f"a worker could not confine itself: {failed}", cgroups_wanted)

    def _try_isolation(self, fd: int) -> None:
        """Today's layers alone (ipc, uts, net namespaces, own uid), as a worker applies them."""
        limits = oslimits.WorkerLimits(memory_mb=1024, open_files=16, isolate=True, uid=self.probe_uid)
        oslimits.confine(fd, limits, oslimits.Confinement(namespaces=True))

    def _try_worker(self, fd: int) -> None:
        """Everything that is on, as a worker of slot 0 applies it."""
        limits = oslimits.WorkerLimits(memory_mb=1024, open_files=16, isolate=True, uid=self.probe_uid)
        oslimits.confine(fd, limits, self.confinement(0))

    def _missing_root_layers(self, why: str, cgroups_wanted: bool) -> None:
        self.missing["namespaces"] = why
        self.missing["uid"] = why
        self.missing["cgroups"] = why if cgroups_wanted else "turned off by LOGIC_WORKER_CGROUPS=0"


def _probe(
    attempt: Callable[[int], None], forking: Callable[[], contextlib.AbstractContextManager] | None = None
) -> str | None:
    """Run `attempt(fd)` in a throwaway child; None if it worked, else what went wrong.

    `fd` is the pipe the child reports an error on; an attempt that confines the child
    keeps it as its IPC descriptor (fd 3)."""
    read_end, write_end = os.pipe()
    try:
        with forking() if forking is not None else contextlib.nullcontext():
            pid = os.fork()
            if pid == 0:  # the child: never returns
                code = 1
                try:
                    os.close(read_end)
                    attempt(write_end)
                    code = 0
                except BaseException as exc:
                    why = (str(exc) or type(exc).__name__).encode()[:500]
                    for fd in (write_end, oslimits.IPC_FD):
                        try:
                            os.write(fd, why)
                            break
                        except BaseException:
                            continue
                finally:
                    os._exit(code)
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        return str(exc.strerror or exc)
    os.close(write_end)
    try:
        message = os.read(read_end, 1000).decode(errors="replace")
    finally:
        os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    if os.WIFSIGNALED(status):
        return message or f"the probe was killed by signal {os.WTERMSIG(status)}"
    return message or "the probe failed"
