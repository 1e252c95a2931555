"""A real `logic serve` process on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

LOGIC = [sys.executable, "-m", "runtime.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    home: Path
    env: dict
    port: int = 0
    token: str = ""
    proc: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {token or self.token}"})

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*LOGIC, *args], env=self.env, input=input, capture_output=True, text=True, timeout=60)

    def start(self, *args: str) -> None:
        """`logic serve` with `args` (e.g. "--role", "api"), once /healthz answers."""
        self.port = free_port()
        log = self.home / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [*LOGIC, "serve", "--port", str(self.port), *args],
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"logic serve exited early:\n{log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"logic serve did not come up:\n{log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def output(self) -> str:
        return "".join(p.read_text() for p in self.logs if p.exists())


@pytest.fixture
def make_server(tmp_path):
    servers: list[Server] = []

    def make(**settings: str) -> Server:
        home = tmp_path / f"home{len(servers)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
        env.update(
            {
                "LOGIC_HOME": str(home),
                "LOGIC_RUN_TIMEOUT_S": "5",
                "LOGIC_DISPATCHER_POLL_S": "0.1",
                "LOGIC_WEBHOOK_TIMEOUT_S": "2",
                "LOGIC_WEBHOOK_RETRIES": "0",
                "LOGIC_DELIVERY_LEASE_S": "6",  # a killed server's claims come back within seconds
                "LOGIC_WEBHOOK_ALLOW_PRIVATE": "1",
            }
        )
        env.update({f"LOGIC_{k.upper()}": str(v) for k, v in settings.items()})
        server = Server(home, env)
        init = server.cli("init", "--json")
        assert init.returncode == 0, init.stderr
        server.token = json.loads(init.stdout)["token"]
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait(timeout=10)


def poll(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll until predicate() is truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@pytest.fixture
def wait_for():
    return poll
