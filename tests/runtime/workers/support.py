"""Helpers shared by the worker tests: jobs, settings and a health check against a pool."""

from __future__ import annotations

import itertools
import os
import select
from pathlib import Path

from runtime.sandbox.executor import RunLimits
from runtime.sandbox.testing import default_limits
from runtime.workers import Job, WorkerPool
from store.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
IS_ROOT = os.geteuid() == 0

EXECUTOR = "runtime.sandbox.executor"

_keys = itertools.count()


def make_settings(**overrides) -> Settings:
    values = {"workers": 4, "worker_memory_mb": 128, "run_timeout_s": 5.0, "worker_max_runs": 10_000}
    values.update(overrides)
    return Settings(**values)


def make_job(
    source: str,
    *,
    owner: str = "user:alice",
    version_key: str | None = None,
    secrets: tuple[str, ...] = (),
    data: str | None = '{"i": 1}',
    timeout_s: float = 1.0,
    memory_mb: int = 128,
    limits: RunLimits | None = None,
) -> Job:
    context = {
        "event": {
            "id": "ev-1",
            "name": "sensor-test",
            "data": data,
            "published_at": "2024-01-01T00:00:00Z",
            "source": "test",
        },
        "scheduled": None,
        "trigger": {"type": "event", "triggered_at": "2024-01-01T00:00:00Z", "event_id": "ev-1"},
        "function_info": {"id": "fn-1", "name": "test", "version": 1, "owner": owner},
    }
    return Job(
        owner=owner,
        version_key=version_key or f"fn-{next(_keys)}:1",
        source=source,
        filename="test.py",
        entry="main",
        declared_secrets=secrets,
        context=context,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        limits=limits or default_limits(),
    )


def no_secrets(name: str) -> str:
    raise AssertionError(f"unexpected secret read {name}")


OK_SOURCE = "def main(event):\n    return {'ok': True}\n"


def assert_healthy(pool: WorkerPool, owner: str = "user:alice") -> None:
    result = pool.run(make_job(OK_SOURCE, owner=owner), no_secrets)
    assert result.status == "success", result.error
    assert result.result == {"ok": True}


def wait_exited(pid: int, timeout_s: float = 10.0) -> None:
    """Return once process `pid` has exited (its pidfd turns readable; reaped or not), or fail."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone and reaped already
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        assert readable, f"process {pid} did not exit within {timeout_s:g} s"
    finally:
        os.close(fd)
