"""The bench: a throwaway data home with the real service, and the peers we compare against.

`Lab` initialises a LOGIC_HOME in a temporary directory (never ~/.logic),
opens `Service.open(settings, runtime=True)` (zygote first, then the store),
and deploys functions through the service as a user would. `close()` stops
the worker pool and removes the directory.

The peers run the *same* function source another way:
    plain            an in-process call of the function, compiled by CPython (the floor)
    restricted       the RestrictedPython code of our sandbox, in process (no isolation)
    restricted_thread  the same, handed to a thread and waited for
    asteval          asteval evaluating the same body
    subprocess       one `python -c` per run, the secret on stdin
    fork             one os.fork() per run, the result back through a pipe
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runtime.manifest import files_from_json
from runtime.sandbox import run_function
from runtime.sandbox.testing import RecordingHost, compile_source, default_limits
from runtime.service import Service
from store import Settings, Store

SECRET_VALUE = "sk_live_51HbEnchMarkVALUE0123456789abcdef"
EVENT_NAME = "bench-warm"


class Lab:
    def __init__(self, **overrides):
        self.dir = Path(tempfile.mkdtemp(prefix="logic-bench-"))
        self.settings = Settings(home=self.dir / "home", master_key=None, **overrides)
        store, _ = Store.initialize(self.settings)
        store.close()
        self.service = Service.open(self.settings, runtime=True)
        self.actor = self.service.actor()
        self.service.create_secret(self.actor, "API_KEY", SECRET_VALUE)
        self._users = 0

    @property
    def engine(self):
        return self.service.engine

    def deploy(self, name: str, source: str, *, secrets=("API_KEY",), event_name: str = EVENT_NAME, actor=None):
        files = files_from_json(
            {
                "name": name,
                "secrets": list(secrets),
                "triggers": [{"type": "event", "event_name": event_name}],
                "source": source,
            }
        )
        return self.service.deploy_function(actor or self.actor, files)

    def new_user(self):
        """A fresh owner with its own API_KEY: its first run needs a worker of its own."""
        self._users += 1
        user = self.service.create_user(self.actor, f"bench{self._users}")
        self.service.create_secret(user, "API_KEY", SECRET_VALUE)
        return user

    def run(self, fn, data: str | None = "{}"):
        """One run through the engine, until its redacted record is committed."""
        record = self.engine.run(fn, {"type": "event", "event_id": "bench"}, event=event(data))
        if record["status"] != "success":
            raise RuntimeError(f"benchmark run failed: {record['status']} {record['error']}")
        return record

    def close(self) -> None:
        try:
            self.service.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def event(data: str | None) -> dict:
    return {
        "id": "bench",
        "name": EVENT_NAME,
        "data": data,
        "published_at": "2026-01-01T00:00:00.000Z",
        "source": "bench",
    }


def context(data: str | None) -> dict:
    return {
        "event": event(data),
        "scheduled": None,
        "trigger": {"type": "event", "triggered_at": "2026-01-01T00:00:00.000Z", "event_id": "bench"},
        "function_info": {"id": "bench", "name": "bench", "version": 1, "owner": "user:bench"},
    }


# -- peers ------------------------------------------------------------------------------------


def plain(source: str, data: str | None):
    """The function as CPython compiles it, called in process: the floor."""
    namespace: dict = {"__name__": "plain_function"}
    exec(compile(source, "plain.py", "exec"), namespace)
    main = namespace["main"]
    ev = types.SimpleNamespace(**event(data))
    secrets = types.SimpleNamespace(API_KEY=SECRET_VALUE)
    return lambda: main(event=ev, secrets=secrets)


class Restricted:
    """Our sandbox's compiled code and run_function, without a worker process."""

    def __init__(self, source: str, data: str | None):
        self.fn = compile_source(source, filename="bench.py", declared_secrets=("API_KEY",))
        self.context = context(data)
        self.host = RecordingHost({"API_KEY": SECRET_VALUE})
        self.limits = default_limits()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-restricted")

    def call(self):
        # As in a worker, whose zygote froze the warm heap: run_function's gc.collect()
        # then walks only what this run made, not this whole benchmark process (O(1) call).
        gc.freeze()
        outcome = run_function(self.fn, self.context, self.host, declared_secrets=("API_KEY",), limits=self.limits)
        if outcome.status != "success":
            raise RuntimeError(f"restricted peer failed: {outcome.error}")
        self.host.reads.clear()
        return outcome

    def in_thread(self):
        return self.pool.submit(self.call).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def asteval_peer(source: str, data: str | None, modules: dict | None = None):
    """asteval: the same body (imports supplied in its symbol table, as it has no import)."""
    from asteval import Interpreter

    interp = Interpreter(minimal=False, use_numpy=False)
    for name, module in (modules or {}).items():
        interp.symtable[name] = module
    body = "\n".join(line for line in source.splitlines() if not line.startswith("import "))
    interp(body)
    if interp.error:
        raise RuntimeError("asteval could not define the function: " + interp.error[0].get_error()[1])
    interp.symtable["event"] = types.SimpleNamespace(**event(data))
    interp.symtable["secrets"] = types.SimpleNamespace(API_KEY=SECRET_VALUE)
    call = interp.parse("main(event, secrets)")

    def op():
        result = interp.run(call)
        if interp.error:
            message = interp.error[0].get_error()[1]
            interp.error = []
            raise RuntimeError("asteval peer failed: " + message)
        return result

    return op


_CHILD = (
    "import sys, types\n"
    "{source}\n"
    "secrets = types.SimpleNamespace(API_KEY=sys.stdin.read())\n"
    "event = types.SimpleNamespace(data={data!r})\n"
    "print(repr(main(event=event, secrets=secrets)))\n"
)


def subprocess_peer(source: str, data: str | None):
    """One fresh interpreter per run (`python -c`), the secret on stdin, the result on stdout."""
    program = _CHILD.format(source=source, data=data)

    def op():
        done = subprocess.run(
            [sys.executable, "-c", program],
            input=SECRET_VALUE,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", "")},
        )
        if done.returncode != 0:
            raise RuntimeError(f"subprocess peer failed: {done.stderr[-300:]}")
        return done.stdout

    return op


def fork_peer(source: str, data: str | None):
    """One fork of this (warm) process per run; the child calls the function and writes the result."""
    main = plain(source, data)

    def op():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(r)
                os.write(w, repr(main()).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        try:
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
        finally:
            os.close(r)
            _pid, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"fork peer child exited with status {status}")
        return b"".join(chunks)

    return op


_FORK_SERVER = (
    "import os, socket, sys, types\n"
    "{source}\n"
    "secrets = types.SimpleNamespace(API_KEY=sys.stdin.readline().rstrip('\\n'))\n"
    "event = types.SimpleNamespace(data={data!r})\n"
    "sock = socket.socket(fileno=int(sys.argv[1]))\n"
    "while sock.recv(1):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        try:\n"
    "            sock.sendall(repr(main(event=event, secrets=secrets)).encode() + b'\\n')\n"
    "        finally:\n"
    "            os._exit(0)\n"
    "    os.waitpid(pid, 0)\n"
)


class ForkServer:
    """A small warm interpreter that forks one child per run (a fork-per-run design done well).

    The child runs the function and answers on the shared socket; the server
    reaps it before taking the next request. One server per calling thread.
    """

    def __init__(self, source: str, data: str | None):
        import socket
        import threading

        self._program = _FORK_SERVER.format(source=source, data=data)
        self._socket = socket
        self._local = threading.local()
        self._servers: list[tuple[subprocess.Popen, object]] = []
        self._lock = threading.Lock()

    def _server(self):
        server = getattr(self._local, "server", None)
        if server is None:
            ours, theirs = self._socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-c", self._program, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.PIPE,
                text=True,
                env={"PATH": os.environ.get("PATH", "")},
            )
            theirs.close()
            proc.stdin.write(SECRET_VALUE + "\n")
            proc.stdin.close()
            server = (proc, ours, ours.makefile("rb"))
            self._local.server = server
            with self._lock:
                self._servers.append(server)
        return server

    def op(self):
        _proc, sock, reader = self._server()
        sock.sendall(b"r")
        line = reader.readline()
        if not line:
            raise RuntimeError("the fork server went away")
        return line

    def close(self) -> None:
        with self._lock:
            servers, self._servers = self._servers, []
        for proc, sock, reader in servers:
            reader.close()
            sock.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
