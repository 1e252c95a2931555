"""Test double: a *compromised* worker's sandbox (the same interface as
runtime.sandbox.executor), used to check what the parent enforces on its own.

The function source names the misbehaviour. It runs inside a real, confined
worker forked by a real zygote (WorkerPool(executor="tests.runtime.workers.rogue_executor")).
"""

import ctypes
import os
import time
from dataclasses import dataclass


class SecretAccessError(Exception):
    pass


from runtime.sandbox.executor import RunLimits  # noqa: E402  (the real limits, so the two never drift)


@dataclass(frozen=True)
class CompiledFunction:
    behaviour: str


@dataclass
class RunOutcome:
    status: str
    result_json: str | None
    error: dict | None


def compile_function(source, **_options):
    return CompiledFunction(source.strip())


def run_function(fn, context, host, *, declared_secrets, limits=RunLimits()):
    behaviour = fn.behaviour
    if behaviour == "flood-logs":  # ignores its own log cap
        for _ in range(100_000):
            host.log("info", "x" * 10_000)
    elif behaviour == "flood-empty-logs":
        for _ in range(10_000_000):
            host.log("info", "")
    elif behaviour == "flood-events":
        for i in range(100_000):
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
    return RunOutcome("success", "null", None)
