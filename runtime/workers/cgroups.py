"""Per-worker cgroup limits: memory (swap off), pids and a CPU quota, counted by the kernel.

RLIMIT_AS bounds a worker's address space; the memory cgroup bounds what the kernel
actually charges it (its pages, page tables, socket buffers, its /tmp), so memory is not
limited by address space alone. A cgroup out-of-memory kill is a SIGKILL: the pool reads
it as "memory_exceeded", and the cgroup limit sits above RLIMIT_AS (which fails an
allocation gracefully, as a MemoryError) by the kernel's own share.

Layout: under the zygote's own cgroup in each hierarchy (never at a hierarchy's root, so
the limits of whoever runs the server still hold), `logic-workers-<zygote pid>/slot-<n>`,
one per uid slot, created when the slot is first used and reused like the slot. The
zygote opens each slot's `cgroup.procs` once; a worker joins by writing "0" to the
inherited descriptors while still root (~0.3 ms, against ~10 ms for a path write into a
fresh memory cgroup), then closes them. Directory descriptors keep this working after
the zygote's pivot into its read-only root, and remove the cgroups when it exits.

cgroup v1 (one hierarchy per controller) is used where it has the controller, else v2
(one hierarchy for all, with the controllers enabled in the parent's subtree_control).
Where neither is writable, `CgroupSlots.open` says why and the worker keeps its rlimits.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
_SET_PREFIX = "logic-workers-"


@dataclass(frozen=True)
class CgroupLimits:
    memory_mb: int
    pids_max: int
    cpu_percent: int  # of one core


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    controllers: tuple[str, ...]  # of ours that it holds
    path: str  # our own cgroup's directory in it


class CgroupUnavailable(Exception):
    """Why no cgroup limit can apply here (the message is shown at start)."""


def _parse_mountinfo(text: str) -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fstype, super options) of each cgroup mount."""
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((fields[4].replace("\\040", " "), fields[3], rest[0], set(rest[2].split(","))))
    return mounts


def find_hierarchies(mountinfo: str, self_cgroup: str, sys_root: str = "") -> list[Hierarchy]:
    """Where our own cgroups are, per controller we want (v1 first, v2 for the rest)."""
    mounts = _parse_mountinfo(mountinfo)
    memberships: dict[str, str] = {}  # controller list ("" for v2) -> our path
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            memberships[parts[1]] = parts[2]
    found: list[Hierarchy] = []
    covered: set[str] = set()
    for point, root, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        wanted = tuple(c for c in CONTROLLERS if c in options and c not in covered)
        if not wanted:
            continue
        ours = next((p for names, p in memberships.items() if names and wanted[0] in names.split(",")), None)
        if ours is None:
            continue
        found.append(Hierarchy(1, wanted, sys_root + point + _relative(ours, root)))
        covered.update(wanted)
    rest = tuple(c for c in CONTROLLERS if c not in covered)
    v2_point = next(((p, r) for p, r, fstype, _o in mounts if fstype == "cgroup2"), None)
    if rest and v2_point is not None and "" in memberships:
        path = sys_root + v2_point[0] + _relative(memberships[""], v2_point[1])
        try:
            with open(os.path.join(path, "cgroup.controllers")) as handle:
                offered = set(handle.read().split())
        except OSError:
            offered = set()
        usable = tuple(c for c in rest if c in offered)
        if usable:
            found.append(Hierarchy(2, usable, path))
    return found


def _relative(path: str, mount_root: str) -> str:
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root) :]
    return path.rstrip("/") if path != "/" else ""


class CgroupSlots:
    """The zygote's cgroups, one set per worker slot (see the module docstring)."""

    def __init__(self, hierarchies: list[Hierarchy], limits: CgroupLimits, name: str):
        self.limits = limits
        self.controllers = tuple(c for c in CONTROLLERS if any(c in h.controllers for h in hierarchies))
        self._hierarchies = hierarchies
        self._name = name
        self._parents: list[int] = []  # our own cgroup's directory, per hierarchy
        self._sets: list[int] = []  # <own>/logic-workers-<pid>, per hierarchy
        self._slots: dict[int, list[int]] = {}  # slot -> its cgroup.procs descriptors
        try:
            for hierarchy in hierarchies:
                parent = os.open(hierarchy.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._parents.append(parent)
                _sweep_stale(parent)
                if hierarchy.version == 2:
                    _enable(parent, hierarchy.controllers)
                os.mkdir(name, 0o755, dir_fd=parent)
                self._sets.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent))
                if hierarchy.version == 2:
                    _enable(self._sets[-1], hierarchy.controllers)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, limits: CgroupLimits, hierarchies: list[Hierarchy] | None = None) -> CgroupSlots:
        """Our cgroups on this machine (or `hierarchies`), ready for slots; raises CgroupUnavailable."""
        if hierarchies is None:
            try:
                with open("/proc/self/mountinfo") as m, open("/proc/self/cgroup") as c:
                    hierarchies = find_hierarchies(m.read(), c.read())
            except OSError as exc:
                raise CgroupUnavailable(f"cannot read this process's cgroups: {exc.strerror}") from exc
        if not hierarchies:
            raise CgroupUnavailable("no cgroup hierarchy with a memory, pids or cpu controller is mounted")
        try:
            slots = cls(hierarchies, limits, f"{_SET_PREFIX}{os.getpid()}")
            slots.join_fds(0)  # slot 0 now: a hierarchy that is not writable shows at start
        except OSError as exc:
            raise CgroupUnavailable(f"not writable ({exc.filename or 'cgroup'}: {exc.strerror})") from exc
        return slots

    def join_fds(self, slot: int) -> list[int]:
        """The descriptors a worker of `slot` writes "0" to (the slot's cgroups, made on first use)."""
        fds = self._slots.get(slot)
        if fds is None:
            fds = []
            try:
                for hierarchy, parent in zip(self._hierarchies, self._sets, strict=True):
                    fds.append(self._make_slot(hierarchy, parent, f"slot-{slot}"))
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            self._slots[slot] = fds
        return fds

    def _make_slot(self, hierarchy: Hierarchy, parent: int, name: str) -> int:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        directory = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
        try:
            memory = self.limits.memory_mb * 1024 * 1024
            quota = CPU_PERIOD_US * self.limits.cpu_percent // 100
            for controller in hierarchy.controllers:
                if controller == "memory" and hierarchy.version == 1:
                    _write(directory, "memory.limit_in_bytes", str(memory))
                    # Swap off: memory + swap may not exceed memory (only with swap accounting).
                    _write(directory, "memory.memsw.limit_in_bytes", str(memory), optional=True)
                    _write(directory, "memory.swappiness", "0", optional=True)
                elif controller == "memory":
                    _write(directory, "memory.max", str(memory))
                    _write(directory, "memory.swap.max", "0", optional=True)
                elif controller == "pids":
                    _write(directory, "pids.max", str(self.limits.pids_max))
                elif hierarchy.version == 1:
                    _write(directory, "cpu.cfs_period_us", str(CPU_PERIOD_US))
                    _write(directory, "cpu.cfs_quota_us", str(quota))
                else:
                    _write(directory, "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=directory)
        finally:
            os.close(directory)

    def close(self) -> None:
        """Close every descriptor and remove our cgroups (no worker may be left in them)."""
        for fds in self._slots.values():
            for fd in fds:
                os.close(fd)
        for set_fd, parent in zip(self._sets, self._parents, strict=False):
            for slot in self._slots:
                with contextlib.suppress(OSError):
                    os.rmdir(f"slot-{slot}", dir_fd=set_fd)
            os.close(set_fd)
            with contextlib.suppress(OSError):
                os.rmdir(self._name, dir_fd=parent)
        for parent in self._parents:
            os.close(parent)
        self._slots, self._sets, self._parents = {}, [], []


def join(fds: list[int]) -> None:
    """In the worker, still root: move this process into its slot's cgroups."""
    for fd in fds:
        os.write(fd, b"0")


def _write(directory: int, name: str, value: str, optional: bool = False) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=directory)
    except FileNotFoundError:
        if optional:
            return
        raise
    try:
        os.write(fd, value.encode())
    except OSError:
        if not optional:
            raise
    finally:
        os.close(fd)


def _enable(directory: int, controllers: tuple[str, ...]) -> None:
    """cgroup v2: let the children of `directory` use `controllers` (fails while it holds
    processes itself, the "no internal processes" rule, unless it is the root)."""
    _write(directory, "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))


def _sweep_stale(parent: int) -> None:
    """Remove the empty sets a zygote killed with -9 left behind (its pid no longer runs)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(_SET_PREFIX) or not name[len(_SET_PREFIX) :].isdigit():
            continue
        try:
            os.kill(int(name[len(_SET_PREFIX) :]), 0)
            continue  # its zygote is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            stale = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent)
            try:
                for slot in os.listdir(stale):
                    if slot.startswith("slot-"):
                        with contextlib.suppress(OSError):
                            os.rmdir(slot, dir_fd=stale)
            finally:
                os.close(stale)
            os.rmdir(name, dir_fd=parent)
