"""The zygote: a clean, warm interpreter that forks workers on request.

Started by WorkerPool as `python -m runtime.workers.zygote CTL_FD CONFIG`
with an empty environment, no inherited descriptor but its control socket,
and its own session. It never held the master key, a database handle or a
secret, so nothing of them is in the memory its children inherit.

Control channel (SOCK_SEQPACKET, one JSON message per packet):
    pool -> zygote  {"op": "spawn", "id"}
    zygote -> pool  {"op": "hello", "pid", "isolate", "layers"}  once, when warm and jailed
                    {"op": "spawned", "id", "pid"}       + fds [worker socket, pidfd]
                    {"op": "spawn_failed", "id", "message"}
                    {"op": "exit", "pid", "code", "signal"}  each reaped worker
EOF on the control socket (the pool closed, or its process died) makes the
zygote SIGKILL every worker it forked, reap them and exit.

Before it serves, the zygote prepares the worker jail once (jail.py: the seccomp
filter, the pid namespaces, the cgroups, its pivot into the read-only tree) and reports
in its hello which layers are in effect.

With `prefork` on, the zygote keeps one confined, un-owned worker forked
ahead and hands it out on the next spawn, so a new owner's first run does
not wait for a fork.
"""

from __future__ import annotations

import gc
import heapq
import importlib
import json
import os
import pkgutil
import select
import signal
import socket
import sys

from runtime.workers import worker as worker_main
from runtime.workers.jail import Jail

MAX_CONTROL_MESSAGE = 64 * 1024

# Imported here, once, so workers find them in sys.modules and never open a
# file to import after they are confined (some are imported lazily by others).
_WARM_MODULES = (
    "json",
    "math",
    "re",
    "datetime",
    "base64",
    "binascii",
    "hashlib",
    "hmac",
    "struct",
    "zlib",
    "random",
    "statistics",
    "string",
    "itertools",
    "functools",
    "collections",
    "decimal",
    "fractions",
    "uuid",
    "cbor2",  # the `cbor` facade's decoder (a C extension in site-packages)
    "_strptime",
    "traceback",
    "linecache",
    "unicodedata",
    "stringprep",
)

_WARM_SOURCE = "import json\n\ndef main(event):\n    return json.loads(event.data)\n"


class _NullHost:
    def read_secret(self, name):
        raise KeyError(name)

    def log(self, level, message):
        pass

    def publish(self, name, data):
        pass


class Zygote:
    def __init__(self, ctl: socket.socket, config: dict, executor, jail: Jail):
        self.ctl = ctl
        self.config = config
        self.executor = executor
        self.jail = jail
        self.poller = select.poll()
        self.poller.register(ctl.fileno(), select.POLLIN)
        self.children: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, uid slot)
        self.free_slots: list[int] = []
        self.next_slot = 0
        self.spare: tuple[socket.socket, int, int] | None = None  # (socket, pid, pidfd)

    def serve(self) -> None:
        layers = self.jail.layers.to_json()
        self._send({"op": "hello", "pid": os.getpid(), "isolate": self.config["isolate"], "layers": layers})
        if self.config.get("prefork"):
            self.spare = self._fork()
        while True:
            for fd, _events in self.poller.poll():
                if fd == self.ctl.fileno():
                    if not self._handle_control():
                        self._shutdown()
                        return
                elif fd in self.children:
                    self._reap(fd)

    def _handle_control(self) -> bool:
        try:
            data = self.ctl.recv(MAX_CONTROL_MESSAGE)
        except OSError:
            return False
        if not data:
            return False
        request = json.loads(data)
        if request.get("op") != "spawn":
            return True
        try:
            sock, pid, pidfd = self.spare or self._fork()
        except OSError as exc:  # EAGAIN, ENOMEM: say so, stay up
            self._send({"op": "spawn_failed", "id": request.get("id"), "message": f"fork failed: {exc.strerror}"})
            return True
        self.spare = None
        try:
            socket.send_fds(
                self.ctl,
                [json.dumps({"op": "spawned", "id": request.get("id"), "pid": pid}).encode()],
                [sock.fileno(), pidfd],
            )
        finally:
            sock.close()
        if self.config.get("prefork"):
            try:
                self.spare = self._fork()
            except OSError:
                self.spare = None  # try again on the next request
        return True

    def _fork(self) -> tuple[socket.socket, int, int]:
        slot = heapq.heappop(self.free_slots) if self.free_slots else self._new_slot()
        uid = self.config["uid_base"] + slot if self.config["isolate"] else None
        pid = 0
        try:
            confinement = self.jail.confinement(slot)
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with self.jail.forking():
                    pid = os.fork()
                    if pid == 0:  # the worker: never returns
                        worker_main.main(child_end.detach(), self.config, uid, self.executor, confinement)
            except BaseException:
                parent_end.close()  # a worker forked all the same sees EOF and exits
                raise
            finally:
                child_end.close()
        except BaseException:
            if pid:  # forked, then failed: the slot is free once it is reaped
                self._track(pid, slot)
            else:
                heapq.heappush(self.free_slots, slot)  # no process holds it
            raise
        return parent_end, pid, self._track(pid, slot)

    def _track(self, pid: int, slot: int) -> int:
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, slot)
        self.poller.register(pidfd, select.POLLIN)
        return pidfd

    def _new_slot(self) -> int:
        self.next_slot += 1
        return self.next_slot - 1

    def _reap(self, pidfd: int) -> None:
        pid, slot = self.children.pop(pidfd)
        self.poller.unregister(pidfd)
        os.close(pidfd)
        _pid, status = os.waitpid(pid, 0)
        # The uid is free again only now that no process of it is left.
        heapq.heappush(self.free_slots, slot)
        report = {"op": "exit", "pid": pid, "code": None, "signal": None}
        if os.WIFSIGNALED(status):
            report["signal"] = os.WTERMSIG(status)
        else:
            report["code"] = os.WEXITSTATUS(status)
        if self.spare is not None and self.spare[1] == pid:  # the spare died unused
            self.spare[0].close()
            self.spare = None
        self._send(report)

    def _send(self, message: dict) -> None:
        try:
            self.ctl.send(json.dumps(message).encode())
        except OSError:
            pass  # the pool is gone; EOF on the next poll ends us

    def _shutdown(self) -> None:
        for pidfd in list(self.children):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pidfd, (pid, _slot) in list(self.children.items()):
            os.waitpid(pid, 0)
            os.close(pidfd)
        self.children.clear()
        self.jail.close()


def warm(executor) -> None:
    """Import and exercise the sandbox once so each fork inherits it hot.

    Also imports every codec: `str.encode("cp1252")` imports its codec
    lazily, and a worker running under its own uid may not be allowed to
    read the standard library (e.g. a Python installed under /root).
    """
    import encodings

    names = list(_WARM_MODULES)
    names += [f"encodings.{info.name}" for info in pkgutil.iter_modules(encodings.__path__)]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # mbcs/oem exist on Windows only
            pass
    try:
        fn = executor.compile_function(_WARM_SOURCE, filename="warm.py", max_bytes=65536, max_depth=100)
        context = {
            "event": {
                "id": "0",
                "name": "warm",
                "data": '{"ok": true}',
                "published_at": "1970-01-01T00:00:00Z",
                "source": "zygote",
            },
            "scheduled": None,
            "trigger": {"type": "manual", "triggered_at": "1970-01-01T00:00:00Z", "event_id": None},
            "function_info": {"id": "warm", "name": "warm", "version": 1, "owner": "zygote"},
        }
        limits = executor.RunLimits(
            log_max_bytes=4096,
            result_max_bytes=4096,
            events_max=1,
            event_data_max_bytes=4096,
            event_name_max_chars=64,
            ledger_max_bytes=4096,
        )  # a warm-up only
        executor.run_function(fn, context, _NullHost(), declared_secrets=(), limits=limits)
    except Exception:
        pass  # warming is an optimisation; a real run reports real errors


def main(argv: list[str]) -> None:
    ctl = socket.socket(fileno=int(argv[1]))
    config = json.loads(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    executor = importlib.import_module(config["executor"])
    warm(executor)
    if config.get("diagnostics"):
        importlib.import_module("runtime.workers.diagnostics")
    jail = Jail.prepare(config)  # last: it may pivot into a tree that has only the import path
    gc.collect()
    gc.freeze()  # keep the warm heap shared copy-on-write with every worker
    Zygote(ctl, config, executor, jail).serve()


if __name__ == "__main__":
    main(sys.argv)
