"""Test double: a *compromised* worker's sandbox (the same interface as
runtime.sandbox.executor), used to check what the parent enforces on its own.

The function source names the misbehaviour. It runs inside a real, confined
worker forked by a real zygote (WorkerPool(executor="tests.runtime.workers.rogue_executor")).
"""

import ctypes
import errno
import json
import os
import resource
import signal
import socket
import struct
import time
from dataclasses import dataclass


class SecretAccessError(Exception):
    pass


# The real limits, so the two never drift: the worker builds a job's limits with executor.RunLimits.
from runtime.sandbox.executor import RunLimits  # noqa: E402, F401


@dataclass(frozen=True)
class CompiledFunction:
    behaviour: str


@dataclass
class RunOutcome:
    status: str
    result_json: str | None
    error: dict | None


def compile_function(source, **_options):
    # A deployed function must be real Python (deploy runs the real policy): there a
    # "# rogue: NAME" line names the behaviour.
    for line in source.splitlines():
        if line.startswith("# rogue: "):
            return CompiledFunction(line[len("# rogue: ") :].strip())
    return CompiledFunction(source.strip())


def run_function(fn, context, host, *, declared_secrets, limits):
    behaviour = fn.behaviour
    if behaviour == "flood-logs":  # ignores its own log cap
        for _ in range(100_000):
            host.log("info", "x" * 10_000)
    elif behaviour == "flood-empty-logs":
        for _ in range(10_000_000):
            host.log("info", "")
    elif behaviour == "flood-events":
        for _ in range(100_000):
            host.publish("e", "d" * 1000)
    elif behaviour == "huge-event":
        host.publish("e", "d" * (200 * 1024))
    elif behaviour == "long-event-name":
        host.publish("n" * 65, None)
    elif behaviour == "huge-frame":
        host.log("info", "x" * (20 * 1024 * 1024))
    elif behaviour == "bad-status":
        return RunOutcome("pwned", None, None)
    elif behaviour == "bad-json":
        return RunOutcome("success", "{not json", None)
    elif behaviour == "bad-level":
        host.log("critical<script>", "hello")
    elif behaviour == "exit":
        os._exit(0)
    elif behaviour == "segfault":
        ctypes.string_at(0)
    elif behaviour == "sleep":  # no CPU used: only the wall clock catches it
        time.sleep(100)
    elif behaviour == "close-and-hang":
        os.close(3)
        time.sleep(100)
    elif behaviour == "secret":
        return RunOutcome("success", '"%s"' % host.read_secret("KEY"), None)
    elif behaviour.startswith("keep-the-parent-busy:"):
        _keep_the_parent_busy(host, float(behaviour.split(":", 1)[1]))
    elif behaviour in ("deep-json-frame", "read-secret-then-deep-json-frame"):
        if behaviour.startswith("read-secret"):
            host.read_secret("KEY")
        payload = b'{"op":"log","level":"info","message":"x","pad":' + b"[" * 5000 + b"]" * 5000 + b"}"
        host._sock.sendall(struct.pack(">I", len(payload)) + payload)
        time.sleep(30)
    elif behaviour == "padded-log-frames":  # tiny messages, megabytes of padding beside them
        pad = "p" * 1_000_000
        for _ in range(10_000):
            _send_raw(host, {"op": "log", "level": "info", "message": "x", "pad": pad})
    elif behaviour == "huge-int-frame":
        payload = b'{"op":"log","level":"info","message":"x","pad":[' + b",".join([b"9" * 4299] * 300) + b"]}"
        host._sock.sendall(struct.pack(">I", len(payload)) + payload)
        time.sleep(30)
    elif behaviour.startswith("overflow-log-with-secret:"):  # ignores the cap, a secret across it
        cap = int(behaviour.split(":", 1)[1])
        for _ in range(int(cap / 2 - 40)):
            host.log("info", "")  # one byte each (the newline), as the sandbox counts them
        host.log("info", "x" * (cap // 2 + 20) + host.read_secret("KEY") + " and after")
        host.log("info", "more after the cap")
    elif behaviour == "deep-json-result":
        return RunOutcome("success", "[" * 5000 + "]" * 5000, None)
    elif behaviour == "deep-but-parseable-result":  # under the C parser's guard, over MAX_NESTING
        return RunOutcome("success", "[" * 500 + "]" * 500, None)
    elif behaviour == "nested-error-fields":
        return RunOutcome("error", None, {"type": [[[[["x"]]]]], "message": "m", "traceback": ""})
    elif behaviour == "done-twice-then-hang":  # its answer and a forged one for the next run, in one write
        done = {"op": "done", "status": "success", "error": None, "cached": False}
        host._sock.sendall(_encode({**done, "result_json": '"first"'}) + _encode({**done, "result_json": '"forged"'}))
        time.sleep(100)  # stays quiet: nothing more on the socket to give it away
    elif behaviour.startswith("jail:"):  # an escape from the language layer: what does the OS let it do?
        _, action, arg = (behaviour.split(":", 2) + [""])[:3]
        return RunOutcome("success", json.dumps(_attempt(JAIL_PROBES[action], arg)), None)
    return RunOutcome("success", "null", None)


# -- escapes from the language layer (tests/security/test_worker_jail.py) -------------------------
# Each probe is unrestricted Python; its answer is {"ok": what it got} or {"errno": "EPERM"}.
# A probe the seccomp filter kills never answers: its run ends "crashed" (SIGSYS).

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long
PTRACE_ATTACH = 16


def _attempt(probe, arg: str) -> dict:
    try:
        return {"ok": probe(arg)}
    except OSError as exc:
        return {"errno": errno.errorcode.get(exc.errno or 0, str(exc.errno))}
    except ValueError as exc:  # resource.setrlimit above the hard limit
        return {"refused": str(exc)}


def _libc_result(rc: int):
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(64).decode("latin-1")


def _write(path: str) -> str:
    with open(path, "w") as handle:
        handle.write("x" * 10)
    return "written"


def _connect_unix(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
    return "connected"


def _connect_tcp(port: str) -> str:
    with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
        return "connected"


def _udp(_arg: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("127.0.0.1", 9))
    return "sent"


def _fork(_arg: str) -> str:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return "forked"


def _fork_bomb(_arg: str) -> str:
    children = 0
    try:
        while children < 10_000:
            pid = os.fork()
            if pid == 0:
                time.sleep(5)
                os._exit(0)
            children += 1
    finally:
        for _ in range(children):
            os.wait()
    return f"{children} children"  # not reached while fork fails


def _execve(path: str) -> str:
    os.execv(path, [path, "-c", "true"])
    return "exec'd"  # not reached


def _ptrace(pid: str) -> int:
    return _libc_result(_libc.ptrace(PTRACE_ATTACH, int(pid), None, None))


def _mount(_arg: str) -> int:
    return _libc_result(_libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))


def _kill(pid: str) -> str:
    os.kill(int(pid), signal.SIGKILL)
    return "killed"


def _prlimit(pid: str) -> list:
    return list(resource.prlimit(int(pid), resource.RLIMIT_NOFILE))


def _raise_memory_limit(_arg: str) -> list:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    return list(resource.getrlimit(resource.RLIMIT_AS))


def _allocate(mb: str) -> int:
    return len(bytearray(int(mb) * 1024 * 1024))


def _touch(mb: str) -> int:
    """Memory the kernel charges (b"x" * n writes every page; bytearray(n) would not)."""
    chunks = [b"x" * (8 << 20) for _ in range(int(mb) // 8)]
    return len(chunks)


def _x32_socket(_arg: str) -> int:
    return _libc_result(_libc.syscall(ctypes.c_long(0x40000000 | 41), socket.AF_INET, socket.SOCK_STREAM, 0))


# i386 `int 0x80` from a 64-bit process: eax = nr, ebx/ecx/edx = args (a MAP_32BIT page).
_INT80 = bytes.fromhex("5389f889f34189c889d14489c2cd805bc3")


def _i386_socket(_arg: str) -> int:
    _libc.mmap.restype = ctypes.c_void_p
    _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = _libc.mmap(None, 4096, 7, 0x02 | 0x20 | 0x40, -1, 0)  # RWX, private, anonymous, 32-bit
    if page in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    ctypes.memmove(page, _INT80, len(_INT80))
    call = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)(page)
    ctypes.memmove(page + 256, struct.pack("<III", socket.AF_INET, socket.SOCK_STREAM, 0), 12)
    rc = call(102, 1, page + 256, 0)  # socketcall(SYS_SOCKET, [AF_INET, SOCK_STREAM, 0])
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc


JAIL_PROBES = {
    "read": _read,
    "listdir": lambda path: sorted(os.listdir(path))[:20],
    "stat": lambda path: os.stat(path).st_mode,
    "write": _write,
    "unix": _connect_unix,
    "tcp": _connect_tcp,
    "udp": _udp,
    "fork": _fork,
    "forkbomb": _fork_bomb,
    "execve": _execve,
    "ptrace": _ptrace,
    "mount": _mount,
    "kill": _kill,
    "prlimit": _prlimit,
    "unlimit-memory": _raise_memory_limit,
    "allocate": _allocate,
    "touch": _touch,
    "x32": _x32_socket,
    "i386": _i386_socket,
    "facts": lambda _arg: {"pid": os.getpid(), "uid": os.getuid()},
    "hostname": lambda _arg: os.uname().nodename,
}


def _send_raw(host, message: dict) -> None:
    import json

    payload = json.dumps(message).encode()
    host._sock.sendall(struct.pack(">I", len(payload)) + payload)


def _keep_the_parent_busy(host, seconds: float) -> None:
    """Never let the parent find the socket empty: secret requests for an undeclared name,
    topped up as soon as answers come back.

    Each request carries 120 KB of escaped non-ASCII text, ~0.2 ms of parent CPU to
    parse (numbers of 4,000 digits, quadratic to convert, are refused now). A few dozen
    of them queued (the worker may raise its own SO_SNDBUF) are ~10 ms of work,
    so the parent never catches up even when this process is descheduled for a while,
    and its answers (one small frame each) never fill the socket buffer either.

    A compromised worker may also lift its own CPU limit (the hard limit is left unlimited,
    see runtime/workers/limits.py limit_run): only the parent's wall clock binds it.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    sock, reader = host._sock, host._reader
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    except OSError:
        pass
    request = _encode({"op": "secret", "name": "NOT_DECLARED", "n": ["\u00e9\u4e2d" * 10_000]})
    sock.sendall(request)
    reply_len = len(_encode(reader.read()))  # every answer is this very frame
    most = 48
    sent = answered = 0
    pending = 0  # bytes of an answer read only in part
    stop = time.monotonic() + seconds
    while True:
        if time.monotonic() < stop:
            while sent - answered < most:
                sock.sendall(request)
                sent += 1
        elif sent == answered:
            return
        data = sock.recv(1 << 16)
        if not data:
            return
        pending += len(data)
        answered += pending // reply_len
        pending %= reply_len


def _encode(message: dict) -> bytes:
    from runtime.workers import protocol

    return protocol.encode(message)


# -- red team (tests/security/test_redteam_jail.py) ---------------------------------------------

_planted: list = []  # what a planted hook took from later runs of this worker


def _raise_memory_to_hard(mb: str) -> int:
    """Lift the soft address-space limit (the job's memory) to the hard one, then allocate."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    return len(bytearray(int(mb) * 1024 * 1024))


def _send_oob(_arg: str) -> int:
    """One byte of AF_UNIX out-of-band data on the IPC socket."""
    sock = socket.socket(fileno=3)
    try:
        return sock.send(b"!", socket.MSG_OOB)
    finally:
        sock.detach()


def _plant(_arg: str) -> str:
    """Stay in the worker: on every later run, ask the parent for that job's declared secrets."""
    from runtime.workers import worker as worker_module

    original = worker_module.Worker.run

    def run(self, job):
        for name in job.get("declared_secrets") or ():
            try:
                _planted.append([name, self.host.read_secret(name)])
            except Exception as exc:
                _planted.append([name, type(exc).__name__])
        return original(self, job)

    worker_module.Worker.run = run
    return "planted"


JAIL_PROBES.update(
    {
        "raise-memory-to-hard": _raise_memory_to_hard,
        "oob": _send_oob,
        "plant": _plant,
        "loot": lambda _arg: list(_planted),
    }
)
