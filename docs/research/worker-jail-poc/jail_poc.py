"""Every layer together, in the order a worker would apply them, then rogue probes.

zygote-like parent (root): warms the sandbox, builds the read-only tree once and
pivots into it, keeps fds of /dev/null and of one slot's cgroup.procs files, prebuilds
the seccomp program. Per worker: setns+unshare(NEWPID), fork; the child unshares
NET|NS|IPC|UTS, mounts its own /tmp, joins the cgroups, drops the bounding set,
no_new_privs, uid, rlimits, a C-level SIGXCPU handler, and finally the seccomp filter.
Each probe runs in its own worker (unrestricted Python, like a rogue executor) and
reports over the worker's inherited socket (fd 3); the parent prints how it ended.
"""

import ctypes
import errno
import gc
import importlib
import json
import os
import resource
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, "/tmp/jail-research")
sys.path.insert(0, "/tmp/jail-research/repo")
import bpf_poc as b  # noqa: E402
import ns_poc  # noqa: E402

libc = ns_poc.libc
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
UID = 1900000033
TAB = json.load(open("/tmp/jail-research/syscalls_x86_64.json"))
EPERM = b.RET_ERRNO | errno.EPERM


def build_filter():
    A = b.BPF_LD | b.BPF_W | b.BPF_ABS
    JEQ = b.BPF_JMP | b.BPF_JEQ | b.BPF_K
    RET = b.BPF_RET | b.BPF_K
    p = [(A, 0, 0, b.OFF_ARCH), (JEQ, 1, 0, b.AUDIT_ARCH_X86_64), (RET, 0, 0, b.RET_KILL_PROCESS),
         (A, 0, 0, b.OFF_NR), (b.BPF_JMP | b.BPF_JGE | b.BPF_K, 0, 1, b.X32_SYSCALL_BIT), (RET, 0, 0, b.RET_KILL_PROCESS)]
    for nr in TAB["allow"].values():
        p += [(JEQ, 0, 1, nr), (RET, 0, 0, b.RET_ALLOW)]
    for nr in TAB["kill"].values():
        p += [(JEQ, 0, 1, nr), (RET, 0, 0, b.RET_KILL_PROCESS)]
    # socket(AF_UNIX, ...) -> EPERM (nothing to reach anyway); any other family -> kill
    p += [(JEQ, 0, 4, TAB["special"]["socket"]), (A, 0, 0, b.OFF_ARG0_LO), (JEQ, 1, 0, socket.AF_UNIX),
          (RET, 0, 0, b.RET_KILL_PROCESS), (RET, 0, 0, EPERM)]
    p.append((RET, 0, 0, EPERM))  # everything else, incl. clone/fork/openat/socketpair
    return p


def confine(ctx):
    check = ns_poc.check
    check(libc.unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    ns_poc.mount("tmpfs", "/tmp", "tmpfs", ns_poc.MS_NOSUID | ns_poc.MS_NODEV | ns_poc.MS_NOEXEC, "size=64k,mode=1777")
    libc.sethostname(b"worker", 6)
    for fd in ctx["cg_fds"]:
        os.write(fd, b"0")
    for fd in (0, 1, 2):
        os.dup2(ctx["devnull"], fd)
    os.closerange(4, 1024)  # keeps 3 = the IPC socket
    os.environ.clear()
    for cap in range(41):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    check(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")
    check(libc.prctl(4, 0, 0, 0, 0), "dumpable")
    os.setgroups([])
    os.setresgid(UID, UID, UID)
    os.setresuid(UID, UID, UID)
    for lim, v in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_NOFILE, 16),
                   (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_AS, 256 << 20)):
        resource.setrlimit(lim, (v, v))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGXCPU, ctypes.cast(libc._exit, ctypes.c_void_p).value)  # pid 1 ignores SIG_DFL SIGXCPU
    arr = (b.SockFilter * len(ctx["filter"]))(*[b.SockFilter(*i) for i in ctx["filter"]])
    check(libc.prctl(22, 2, ctypes.byref(b.SockFprog(len(ctx["filter"]), arr)), 0, 0), "seccomp")


def attempt(fn):
    try:
        r = fn()
        return f"OK {r!r}"[:70]
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    except MemoryError:
        return "MemoryError"


def p_normal():
    import datetime, decimal, hashlib, hmac, math, random, re, uuid, zlib  # noqa: E401 (warm in sys.modules)
    out = [json.dumps({"sha": hashlib.sha256(b"x").hexdigest()[:8], "hmac": hmac.new(b"k", b"m", "sha256").hexdigest()[:8],
                       "re": re.sub(r"\d", "#", "a1b2"), "dec": str(decimal.Decimal(1) / 7)[:6], "sqrt": math.sqrt(2),
                       "uuid4": str(uuid.uuid4())[:8], "rand": random.random() < 1, "z": len(zlib.compress(b"a" * 999)),
                       "now": datetime.datetime.now().year, "pid": os.getpid(), "host": os.uname().nodename})]
    out.append("alloc 300 MiB under RLIMIT_AS 256 MiB: " + attempt(lambda: len(bytearray(300 << 20))))
    try:
        raise ValueError("traceback works")
    except ValueError:
        import traceback
        out.append("traceback: " + traceback.format_exc().splitlines()[-1])
    return out


def p_files():
    def ls(p):
        return sorted(os.listdir(p))
    return [f"{what}: {attempt(fn)}" for what, fn in [
        ("read /etc/passwd", lambda: open("/etc/passwd").read(10)),
        ("read /work/main/README.md", lambda: open("/work/main/README.md").read(10)),
        ("read /root/.logic (a LOGIC_HOME)", lambda: os.listdir("/root/.logic")),
        ("listdir /", lambda: ls("/")),
        ("listdir /proc", lambda: ls("/proc")),
        ("read /proc/1/environ", lambda: open("/proc/1/environ").read()),
        ("write /tmp/x", lambda: open("/tmp/x", "w")),
        ("os.stat /etc", lambda: os.stat("/etc")),
    ]]


def p_socket_unix():
    return [attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)), "socketpair: " + attempt(socket.socketpair)]


def p_socket_tcp():
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def p_socket_udp():
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)


def p_fork():
    return ["fork: " + attempt(os.fork)]


def p_execve():
    os.execv("/bin/sh", ["/bin/sh", "-c", "true"])


def p_ptrace():
    libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH


def p_mount():
    libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)


def p_setuid():
    return ["setuid(0): " + attempt(lambda: os.setuid(0))]


def p_i386():
    fn, page = b.int80()
    ctypes.memmove(page + 256, struct.pack("<III", socket.AF_INET, socket.SOCK_STREAM, 0), 12)
    return [fn(102, 1, page + 256, 0)]


def p_cgroup_oom():
    # RSS past the 128 MiB memory cgroup but under RLIMIT_AS (raise the soft limit is not
    # possible above the hard 256 MiB): touch 200 MiB
    chunks = [bytearray(8 << 20) for _ in range(25)]
    return [len(chunks)]


def p_cpu():
    resource.setrlimit(resource.RLIMIT_CPU, (1, resource.RLIM_INFINITY))
    sum(range(10**11))


PROBES = [p_normal, p_files, p_socket_unix, p_socket_tcp, p_socket_udp, p_fork, p_execve, p_ptrace, p_mount,
          p_setuid, p_i386, p_cgroup_oom, p_cpu]


def spawn(ctx, probe):
    ours, theirs = socket.socketpair()
    t0 = time.perf_counter()
    ns_poc.check(libc.setns(ctx["pidns"], CLONE_NEWPID), "setns")
    ns_poc.check(libc.unshare(CLONE_NEWPID), "unshare(NEWPID)")
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.dup2(theirs.fileno(), 3)
            confine(ctx)
            sock = socket.socket(fileno=3)
            sock.sendall(json.dumps({"op": "ready", "pid": os.getpid()}).encode() + b"\n")
            sock.sendall(json.dumps({"result": probe()}).encode() + b"\n")
        except BaseException as e:  # noqa: BLE001
            try:
                socket.socket(fileno=3).sendall(json.dumps({"error": repr(e)}).encode() + b"\n")
            except BaseException:
                code = 3
        os._exit(code)
    ns_poc.check(libc.setns(ctx["pidns"], CLONE_NEWPID), "setns back")
    theirs.close()
    ours.settimeout(5)
    data = b""
    try:
        while data.count(b"\n") < 2:
            chunk = ours.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    how = f"killed by {signal.Signals(os.WTERMSIG(st)).name}" if os.WIFSIGNALED(st) else f"exit {os.WEXITSTATUS(st)}"
    lines = [json.loads(x) for x in data.splitlines()]
    ready_ms = None
    print(f"{probe.__name__:13s} -> worker {how}; said: {lines[1:] if len(lines) > 1 else lines}")


def main():
    executor = importlib.import_module("runtime.sandbox.executor")
    from runtime.workers import zygote

    zygote.warm(executor)
    ctx = {"pidns": os.open("/proc/self/ns/pid", os.O_RDONLY), "devnull": os.open("/dev/null", os.O_RDWR), "filter": build_filter()}
    print(f"filter: {len(ctx['filter'])} BPF instructions")
    cgs = []
    for ctl in ("memory", "pids", "cpu"):
        for line in open("/proc/self/cgroup"):
            _i, ctrls, path = line.rstrip().split(":", 2)
            if ctl in ctrls.split(","):
                cgs.append(f"/sys/fs/cgroup/{ctl}{path}/jail-research-poc")
                os.mkdir(cgs[-1])
    open(cgs[0] + "/memory.limit_in_bytes", "w").write(str(128 << 20))
    open(cgs[0] + "/memory.memsw.limit_in_bytes", "w").write(str(128 << 20))
    open(cgs[1] + "/pids.max", "w").write("4")
    open(cgs[2] + "/cpu.cfs_quota_us", "w").write("50000")
    ctx["cg_fds"] = [os.open(d + "/cgroup.procs", os.O_WRONLY) for d in cgs]
    ns_poc.build_root(sys.argv[1])
    gc.collect()
    gc.freeze()
    for probe in PROBES:
        spawn(ctx, probe)
    print("oom_kill count of the slot's memory cgroup: see caller")


if __name__ == "__main__":
    main()
