"""The worker child: confine, then serve runs over the IPC socket until EOF.

Runs in a process forked from the zygote. It holds no database handle, no
master key and no secret but the ones the parent hands it, one read at a
time, for the run in progress. Compiled code is cached per version_key for
the worker's life (a worker serves one owner, and is recycled after
`worker_max_runs`), so the warm path neither forks nor compiles.
"""

from __future__ import annotations

import os
import socket
import sys

from runtime.workers import limits as oslimits
from runtime.workers import protocol

EXIT_EOF = 0
EXIT_ISOLATION = 70  # confinement failed: the worker refused to run
EXIT_PROTOCOL = 71
EXIT_MEMORY = 72  # out of memory in the worker's own code (not the user's)

_PARENT_MAX_FRAME = 64 * 1024 * 1024  # the parent is trusted; this only stops garbage


class WorkerHost:
    """The sandbox's Host: every call is one frame to the parent."""

    __slots__ = ("_sock", "_reader", "_secret_error", "_ledger_error", "spin_s")

    def __init__(self, sock: socket.socket, reader: protocol.FrameReader, secret_error: type, ledger_error: type):
        self._sock = sock
        self._reader = reader
        self._secret_error = secret_error
        self._ledger_error = ledger_error
        self.spin_s = 0.0  # set per run by the parent, which knows how busy the CPUs are

    def read_secret(self, name: str) -> str:
        protocol.send(self._sock, {"op": "secret", "name": name})
        reply = self._reader.read(spin_s=self.spin_s)
        if reply is None:
            os._exit(EXIT_EOF)  # the parent went away mid-run
        if reply["op"] == "secret" and isinstance(reply.get("value"), str):
            return reply["value"]
        raise self._secret_error(str(reply.get("message") or f"secret {name} could not be read"))

    def mask(self, value: str) -> None:
        # One-way: the parent checks the value again and masks it (runtime/sandbox/masks.py).
        protocol.send(self._sock, {"op": "mask", "value": value})

    def ledger(self, action: str, name: str, data_json: str | None, mode: str | None) -> dict:
        protocol.send(
            self._sock, {"op": "ledger", "action": action, "name": name, "data_json": data_json, "mode": mode}
        )
        reply = self._reader.read(spin_s=self.spin_s)
        if reply is None:
            os._exit(EXIT_EOF)
        if reply["op"] == "ledger" and isinstance(reply.get("value"), dict):
            return reply["value"]
        raise self._ledger_error(str(reply.get("message") or f"ledger {name} could not be used"))

    def log(self, level: str, message: str) -> None:
        # No timestamp: the parent stamps each line as it arrives (a worker's clock is not trusted).
        protocol.send(self._sock, {"op": "log", "level": level, "message": message})

    def publish(self, name: str, data: str | None) -> None:
        protocol.send(self._sock, {"op": "publish", "name": name, "data": data})


class Worker:
    def __init__(self, sock: socket.socket, config: dict, executor):
        self.sock = sock
        self.config = config
        self.executor = executor
        self.reader = protocol.FrameReader(sock, _PARENT_MAX_FRAME)
        # An executor without ledgers (the test executors) gets its secret error for them.
        ledger_error = getattr(executor, "LedgerError", executor.SecretAccessError)
        self.host = WorkerHost(sock, self.reader, executor.SecretAccessError, ledger_error)
        self.cache: dict[str, object] = {}

    def serve(self) -> None:
        while True:
            # The next run of a busy function comes within a commit's time: spin as
            # long as the parent said (see WorkerPool._execute) before sleeping.
            message = self.reader.read(spin_s=self.host.spin_s)
            if message is None:
                return
            op = message["op"]
            if op == "run":
                reply = self.run(message)
            elif op == "diagnose" and self.config.get("diagnostics"):
                from runtime.workers import diagnostics

                reply = diagnostics.diagnose(message)
            else:
                os._exit(EXIT_PROTOCOL)
            protocol.send(self.sock, reply)

    def run(self, job: dict) -> dict:
        executor = self.executor
        spin_s = job.get("spin_s")
        self.host.spin_s = min(float(spin_s), 0.01) if isinstance(spin_s, (int, float)) and spin_s > 0 else 0.0
        # Limits first: compiling is the user's work too, and the CPU limit
        # left by the previous run must not fire during it.
        oslimits.limit_run(job["timeout_s"], job["memory_mb"], self.config["memory_mb"])
        key = job["version_key"]
        fn = self.cache.get(key)
        if fn is None:
            source = job.get("source")
            if source is None:
                return _done("error", error=_internal_error("the worker has no source for this version"))
            try:
                fn = executor.compile_function(
                    source,
                    filename=job["filename"],
                    entry=job["entry"],
                    declared_secrets=job["declared_secrets"],
                    max_bytes=self.config["source_max_bytes"],
                    max_depth=self.config["ast_max_depth"],
                )
            except MemoryError:
                return _done("memory_exceeded", error=_memory_error())
            except Exception as exc:  # DeployError, or a policy bug: report, don't die
                message = getattr(exc, "message", None) or str(exc)
                return _done("error", error={"type": type(exc).__name__, "message": message, "traceback": ""})
            self.cache[key] = fn
        try:
            outcome = executor.run_function(
                fn,
                job["context"],
                self.host,
                declared_secrets=job["declared_secrets"],
                limits=executor.RunLimits(**job["limits"]),
            )
        except MemoryError:
            return _done("memory_exceeded", error=_memory_error(), cached=True)
        except BaseException as exc:  # run_function promises not to raise; belt and braces
            error = _internal_error(f"the sandbox failed: {type(exc).__name__}")
            return _done("error", error=error, cached=True)
        return _done(outcome.status, outcome.result_json, outcome.error, cached=True)


def _done(status: str, result_json: str | None = None, error: dict | None = None, cached: bool = False) -> dict:
    return {"op": "done", "status": status, "result_json": result_json, "error": error, "cached": cached}


def _internal_error(message: str) -> dict:
    return {"type": "WorkerError", "message": message, "traceback": ""}


def _memory_error() -> dict:
    return {"type": "MemoryError", "message": "the run exceeded its memory limit", "traceback": ""}


def main(ipc_fd: int, config: dict, uid: int | None, executor, jail: oslimits.Confinement | None = None) -> None:
    """Entry point in the forked child; never returns. `jail`: what the zygote prepared."""
    code = EXIT_EOF
    try:
        try:
            facts = oslimits.confine(
                ipc_fd,
                oslimits.WorkerLimits(
                    memory_mb=config["memory_mb"],
                    open_files=config["open_files"],
                    isolate=config["isolate"],
                    uid=uid,
                ),
                jail,
            )
        except Exception:
            code = EXIT_ISOLATION
            return
        sock = socket.socket(fileno=oslimits.IPC_FD)
        protocol.send(sock, {"op": "ready", "pid": os.getpid(), **facts})
        Worker(sock, config, executor).serve()
    except protocol.ProtocolError:
        code = EXIT_PROTOCOL
    except MemoryError:
        code = EXIT_MEMORY
    except BaseException:
        code = EXIT_PROTOCOL
    finally:
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        os._exit(code)
