"""Test double: a *compromised* worker's sandbox (the same interface as
runtime.sandbox.executor), used to check what the parent enforces on its own.

The function source names the misbehaviour. It runs inside a real, confined
worker forked by a real zygote (WorkerPool(executor="tests.runtime.workers.rogue_executor")).
"""

import ctypes
import os
import resource
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
    return RunOutcome("success", "null", None)


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
