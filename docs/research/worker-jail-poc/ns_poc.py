"""Private mount tree (read-only, minimal) + pid/ipc/uts/net namespaces, via ctypes.

Phase A ("zygote"): unshare(CLONE_NEWNS), make / rprivate, build a tmpfs root with
read-only bind mounts of just the Python install, the venv's site-packages and the
package, pivot_root into it, detach the old root. Timed.
Phase B ("worker"): unshare(NEWPID|NEWIPC|NEWUTS|NEWNET|NEWNS) in the zygote-like
process, fork; the child is pid 1 of its own pid ns, gets its own empty /tmp
tmpfs, drops to an unprivileged uid and probes what it can see.
Run as root from any cwd. Nothing is visible outside: every mount lives in the
private mount namespace of this process, which dies with it.
"""

import ctypes
import errno
import os
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.syscall.restype = ctypes.c_long

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = 0x20000000, 0x40000000, 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_pivot_root = 155

PYHOME = os.path.realpath(sys.base_prefix)  # /root/.pyenv/versions/3.11.7
SITE = next(p for p in sys.path if p.endswith("site-packages"))
PROJECT = "/work/main"
BINDS = [  # (source, read-only)
    ("/usr", True),  # libc/libssl etc. for lazily dlopen'ed extension modules
    (PYHOME, True),
    (SITE, True),
    (f"{PROJECT}/runtime", True),
    (f"{PROJECT}/store", True),
]


def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src, dst, fstype, flags, data=None):
    check(libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags, data and data.encode()), f"mount {dst}")


def build_root(new_root):
    check(libc.unshare(CLONE_NEWNS), "unshare(NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do propagates back to the host
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for src, ro in BINDS:
        dst = new_root + src
        os.makedirs(dst, mode=0o755, exist_ok=True)
        mount(src, dst, None, MS_BIND)
        if ro:  # a bind mount's flags change only on a remount
            mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin")):
        os.symlink(target, f"{new_root}/{link}")  # Debian's merged /usr
    for d in ("tmp", "proc", ".old"):
        os.mkdir(f"{new_root}/{d}", 0o755)
    # the venv: just its bin/python symlink and pyvenv.cfg, so sys.prefix resolves the same
    venv = sys.prefix
    os.makedirs(new_root + venv + "/bin", exist_ok=True)
    for name in ("python", "python3", "python3.11"):
        os.symlink(os.readlink(f"{venv}/bin/{name}"), f"{new_root}{venv}/bin/{name}")
    with open(f"{new_root}{venv}/pyvenv.cfg", "w") as f:
        f.write(open(f"{venv}/pyvenv.cfg").read())
    os.chdir(new_root)
    check(libc.syscall(SYS_pivot_root, b".", b".old"), "pivot_root")
    check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)  # the tmpfs root itself


def probe():
    out = []
    for path in ("/etc/passwd", f"{PROJECT}/README.md", f"{PROJECT}/runtime/workers/zygote.py", "/proc/1/status", "/root/.bash_history"):
        try:
            open(path).read(1)
            out.append(f"read {path}: OK")
        except OSError as e:
            out.append(f"read {path}: {errno.errorcode[e.errno]}")
    for path in ("/x", "/tmp/x", PYHOME + "/x"):
        try:
            open(path, "w").close()
            out.append(f"write {path}: OK")
        except OSError as e:
            out.append(f"write {path}: {errno.errorcode[e.errno]}")
    out.append("ls / = " + " ".join(sorted(os.listdir("/"))))
    out.append("ls /proc = " + repr(os.listdir("/proc")))
    return out


def main():
    new_root = sys.argv[1]
    global PIDNS_FD
    PIDNS_FD = os.open('/proc/self/ns/pid', os.O_RDONLY)
    t0 = time.perf_counter()
    build_root(new_root)
    t1 = time.perf_counter()
    print(f"[zygote] mount tree built + pivoted in {1e3 * (t1 - t0):.2f} ms; mounts now:")
    print("   " + "\n   ".join(open("/proc/self/mounts").read().splitlines()) if os.path.exists("/proc/self/mounts") else "   (no /proc)")
    import sqlite3  # a module not imported before: found and dlopen'ed inside the jail

    print(f"[zygote] lazy import inside the jail: sqlite3 {sqlite3.sqlite_version}")
    # per worker: a fresh pid ns for the child (setns back to our own, then unshare:
    # a second unshare(NEWPID) alone fails with EINVAL), then the child unshares the rest
    for n in range(3):
        t2 = time.perf_counter()
        check(libc.setns(PIDNS_FD, CLONE_NEWPID), "setns(own pid ns)")
        check(libc.unshare(CLONE_NEWPID), "unshare(NEWPID)")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            check(libc.unshare(CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWNS), "unshare worker ns")
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=1777")
            lines = [f"worker {n}: getpid()={os.getpid()}, ns setup (setns+unshare+fork+unshare+tmpfs) {1e3 * (time.perf_counter() - t2):.2f} ms"]
            os.sethostname(b"worker") if hasattr(os, "sethostname") else libc.sethostname(b"worker", 6)
            os.setgroups([])
            os.setresgid(1900000099, 1900000099, 1900000099)
            os.setresuid(1900000099, 1900000099, 1900000099)
            lines.append(f"uid {os.getuid()}, hostname {os.uname().nodename}, /tmp before: {os.listdir('/tmp')}")
            if n == 0:
                lines += probe()
            else:
                open(f"/tmp/left-by-worker-{n}", "w").close()
            os.write(w, ("\n".join(lines) + "\n").encode())
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        print("[worker]", os.read(r, 65536).decode().rstrip().replace("\n", "\n[worker] "))
        os.close(r)
    print(f"[zygote] zygote hostname still {os.uname().nodename}, zygote /tmp: {os.listdir('/tmp')}")
    t3 = time.perf_counter()
    check(libc.setns(PIDNS_FD, CLONE_NEWPID), "setns(own pid ns)")
    pid = os.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import sys, json, hashlib, os; print('[exec] python', sys.version.split()[0], 'prefix', sys.prefix, 'pid', os.getpid(), hashlib.sha256(b'x').hexdigest()[:8])"])
    os.waitpid(pid, 0)
    print(f"[zygote] exec of a fresh python in the jail: {1e3 * (time.perf_counter() - t3):.0f} ms")


if __name__ == "__main__":
    main()
