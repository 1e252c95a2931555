"""Parent-side handle of the zygote process: start it, ask for workers, hear exits.

One daemon thread reads the control socket: it hands each spawned worker
(socket + pidfd, received with SCM_RIGHTS) to the thread that asked for it,
and records the exit status the zygote reports for each reaped worker, so
the pool can tell a segfault or SIGXCPU from a clean exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from store.errors import WorkerUnavailable

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_MAX_CONTROL_MESSAGE = 64 * 1024


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: int | None

    def describe(self) -> str:
        if self.signal is not None:
            try:
                return f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                return f"killed by signal {self.signal}"
        return f"exited with code {self.code}"


@dataclass
class Spawned:
    pid: int
    sock: socket.socket
    pidfd: int


class Spawner:
    def __init__(self, config: dict, start_timeout_s: float = 60.0):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._next_id = 0
        self._pending: dict[int, Spawned | str | None] = {}  # str: why the spawn failed
        self._live: set[int] = set()
        self._exits: dict[int, ExitStatus] = {}
        self.alive = True
        # Threat: the server's environment holds LOGIC_MASTER_KEY and its
        # descriptors include the database. The zygote gets neither: a fresh
        # exec (no inherited memory), an environment with only what Python
        # needs to find this project, and only its control socket.
        env = {"PYTHONPATH": _PROJECT_ROOT, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUTF8": "1"}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-s", "-m", "runtime.workers.zygote", str(theirs.fileno()), json.dumps(config)],
                pass_fds=[theirs.fileno()],
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.pid = self._process.pid
        self._sock.settimeout(start_timeout_s)
        try:
            hello = self._sock.recv(_MAX_CONTROL_MESSAGE)
        except OSError:
            hello = b""
        self.hello = json.loads(hello) if hello else {}
        if self.hello.get("op") != "hello":
            self.close()
            raise WorkerUnavailable("the worker zygote failed to start (see the server's stderr)")
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name="logic-zygote-reader", daemon=True)
        self._reader.start()

    def spawn(self, timeout_s: float = 10.0) -> Spawned:
        with self._cond:
            if not self.alive:
                raise WorkerUnavailable("the worker zygote is not running")
            request_id = self._next_id
            self._next_id += 1
            self._pending[request_id] = None
            try:
                self._sock.send(json.dumps({"op": "spawn", "id": request_id}).encode())
            except OSError as exc:
                del self._pending[request_id]
                raise WorkerUnavailable("the worker zygote is not running") from exc
            deadline = time.monotonic() + timeout_s
            while self._pending.get(request_id) is None and self.alive:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            spawned = self._pending.pop(request_id, None)
            if spawned is None:
                raise WorkerUnavailable("the worker zygote did not answer a spawn request")
            if isinstance(spawned, str):
                raise WorkerUnavailable(f"the worker zygote could not start a worker: {spawned}")
            return spawned

    def wait_exit(self, pid: int, timeout_s: float) -> ExitStatus | None:
        """The exit status the zygote reported for `pid`, or None if unknown in time."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while pid not in self._exits and pid in self._live and self.alive:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            self._live.discard(pid)
            return self._exits.pop(pid, None)

    def forget(self, pid: int) -> None:
        with self._lock:
            self._live.discard(pid)
            self._exits.pop(pid, None)

    def _read_loop(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._sock, _MAX_CONTROL_MESSAGE, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                break
            message = json.loads(data)
            with self._cond:
                if message["op"] == "spawned" and len(fds) == 2:
                    spawned = Spawned(message["pid"], socket.socket(fileno=fds[0]), fds[1])
                    if message["id"] in self._pending:
                        self._pending[message["id"]] = spawned
                        self._live.add(spawned.pid)
                    else:  # its requester gave up: don't leak the worker
                        _discard(spawned)
                elif message["op"] == "spawn_failed" and message.get("id") in self._pending:
                    self._pending[message["id"]] = str(message.get("message") or "unknown error")
                elif message["op"] == "exit":
                    if message["pid"] in self._live:
                        self._exits[message["pid"]] = ExitStatus(message["code"], message["signal"])
                else:
                    for fd in fds:
                        os.close(fd)
                self._cond.notify_all()
        with self._cond:
            self.alive = False
            self._cond.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the control socket: the zygote kills its workers and exits."""
        with self._cond:
            self.alive = False
            self._cond.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(timeout_s)
        self._sock.close()
        with self._lock:
            for spawned in self._pending.values():
                if isinstance(spawned, Spawned):
                    _discard(spawned)
            self._pending.clear()


def _discard(spawned: Spawned) -> None:
    try:
        signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    spawned.sock.close()
    os.close(spawned.pidfd)
