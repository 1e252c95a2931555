"""Namespaces of a worker: the read-only mount tree, the pid namespace per fork, and the rest.

The zygote (as root, where the kernel allows it) moves itself once into a private mount
namespace whose root is a small read-only tree: the Python install, the import path
and the package's own code, nothing else (no /etc, no /proc, no /dev, no data home, no
unix socket of the host). Every worker it forks inherits that tree, so a worker pays
only for `unshare` and its own empty /tmp (0.6-0.8 ms once against ~3-4 ms per fork,
docs/research/worker-jail-2026-12-01.md section 6).

Per worker:
  - a pid namespace of its own, in which it is pid 1 and alone. CLONE_NEWPID applies to
    the children of the caller, and only once: the zygote enters its own namespace
    again (setns) before each unshare and right after each fork, or the next fork
    lands in the dead worker's namespace (ENOMEM) and a second unshare fails (EINVAL);
  - in the child: new mount (for its /tmp), ipc, uts (hostname "worker") and network
    namespaces, which act on the caller at once (so never in the zygote).

Every call raises OSError with the step that failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000  # os.CLONE_* exist only from Python 3.12

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
SYS_PIVOT_ROOT = 155  # x86_64; other architectures get no mount tree (unsupported() says so)

WORKER_HOSTNAME = b"worker"
# The root tree is directories and bind mounts only; /tmp holds nothing a worker could
# fill (RLIMIT_FSIZE is 0): sizes that only stop abuse of the kernel's memory.
_ROOT_TMPFS = "size=1m,mode=0755"
_TMP_TMPFS = "size=64k,mode=1777"
# Where the new root is mounted before the pivot: any existing directory that does not
# hide a source (a mount in our own namespace is invisible to the host).
_STAGING = ("/mnt", "/media", "/srv", "/opt", "/var/tmp", "/tmp")

# Whether a worker gets an empty /tmp of its own: not when the package or the interpreter
# lives under /tmp (a checkout in /tmp), since a tmpfs there would hide it; set by build_root
# in the zygote, inherited by every worker it forks.
private_tmp = True

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int, what: str) -> None:
    _check(_libc.unshare(flags), f"unshare({what})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    _check(rc, f"mount {target}")


def unsupported() -> str | None:
    """Why this machine cannot give workers namespaces, or None (root is checked by the caller)."""
    if not sys.platform.startswith("linux"):
        return "namespaces are a Linux feature"
    if os.uname().machine != "x86_64":
        return f"pivot_root is not wired up for {os.uname().machine}"
    return None


def tree_sources(project_root: str) -> list[str]:
    """What the read-only root holds: the directories this interpreter imports from (with
    the project replaced by its two packages: no README, .git, tests or data beside them),
    and the system's shared libraries for a C extension imported late."""
    project = os.path.realpath(project_root)
    wanted = []
    for entry in sys.path:
        path = os.path.realpath(entry or ".")
        if path == project or not os.path.isdir(path) or path == "/":
            continue
        wanted.append(path)
    wanted += [os.path.join(project, "runtime"), os.path.join(project, "store")]
    wanted += [p for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64") if os.path.isdir(p) and not os.path.islink(p)]
    sources: list[str] = []
    for path in sorted(set(wanted)):
        if not any(path == s or path.startswith(s + "/") for s in sources):
            sources.append(path)  # inside another source: already there
    return sources


def build_root(sources: list[str]) -> None:
    """Move this process (the zygote) into a private mount namespace whose root is a
    read-only tree of `sources`; irreversible. Open what is needed from outside first."""
    unshare(CLONE_NEWNS, "mount")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates to the host
    staging = next(
        (d for d in _STAGING if os.path.isdir(d) and not any(s == d or s.startswith(d + "/") for s in sources)),
        None,
    )
    if staging is None:
        raise OSError(0, "no directory to build the root in")
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, _ROOT_TMPFS)
    for source in sources:
        target = staging + source
        os.makedirs(target, mode=0o755, exist_ok=True)
        _mount(source, target, None, MS_BIND)
        # A bind mount takes its flags only on a remount; noexec would stop dlopen too.
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # Debian's merged /usr: the loader looks in /lib and /lib64.
    for link, target_dir in (("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if not os.path.lexists(f"{staging}/{link}") and os.path.isdir(f"{staging}/{target_dir}"):
            os.symlink(target_dir, f"{staging}/{link}")
    global private_tmp
    private_tmp = not any(s == "/tmp" or s.startswith("/tmp/") for s in sources)
    os.makedirs(f"{staging}/tmp", 0o755, exist_ok=True)  # it exists when a source lives under /tmp
    os.chdir(staging)
    # pivot_root(".", "."): the old root ends up on top of the new one; detach it.
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def root_contents() -> list[str]:
    """Top-level names of the current root (for the tests and the probe)."""
    return sorted(os.listdir("/"))


class PidNamespaces:
    """Hands each fork of the zygote a new pid namespace (see the module docstring)."""

    def __init__(self) -> None:
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def next_fork(self) -> Iterator[None]:
        """Around one os.fork(): the child is pid 1 of a namespace of its own."""
        self._back()
        unshare(CLONE_NEWPID, "pid")
        try:
            yield
        finally:
            self._back()

    def _back(self) -> None:
        _check(_libc.setns(self._own, CLONE_NEWPID), "setns(pid)")


def enter_worker_namespaces(mount: bool, network_only: bool = False) -> None:
    """In a freshly forked worker, still root: ipc, uts and network namespaces of its own
    and, with `mount` (the zygote's tree is in place), an empty private /tmp.
    `network_only`: the network namespace alone (the layers before the jail)."""
    if network_only:
        unshare(CLONE_NEWNET, "net")
        return
    flags = CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET
    if mount:
        flags |= CLONE_NEWNS
    unshare(flags, "mount, ipc, uts, net" if mount else "ipc, uts, net")
    if mount and private_tmp:
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, _TMP_TMPFS)
    _check(_libc.sethostname(WORKER_HOSTNAME, len(WORKER_HOSTNAME)), "sethostname")


PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
