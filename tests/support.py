"""Helpers shared by test modules (fixtures live in conftest.py files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from runtime.integrations.runner import IntegrationRunner
from runtime.service import Service
from runtime.workers.testing import InProcessPool
from store import Settings, Store
from store.clock import utcnow
from store.errors import NotFound
from store.events import EventStore, event_store
from store.identity import User


def runtime_service(
    tmp_path_factory: pytest.TempPathFactory, name: str, *, in_process: bool = False, **overrides
) -> Service:
    """An initialized home and a Service with workers, for a module-scoped fixture; with
    `in_process`, its runs go to an InProcessPool instead (see `in_process_service`).

    Module fixtures run before the per-test environment clean-up, so LOGIC_* variables of
    the calling shell are ignored here explicitly.
    """
    with pytest.MonkeyPatch.context() as mp:
        for variable in list(os.environ):
            if variable.startswith("LOGIC_"):
                mp.delenv(variable)
        settings = Settings(home=Path(tmp_path_factory.mktemp(name)) / "home", **overrides)
    Store.initialize(settings)[0].close()
    if in_process:
        return in_process_service(settings)
    return Service.open(settings, runtime=True)


def in_process_service(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Service:
    """A Service over an initialized home whose runs go to an InProcessPool: no worker
    process, so for the engine and service tests that are not about workers, limits,
    isolation or crashes (runtime/workers/testing.py says what the double leaves out)."""
    return Service(Store.open(settings), pool=InProcessPool(settings), clock=clock)


DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}  # no environment read
BUSY_TIMEOUT_MS = DEFAULTS["busy_timeout_ms"]


def event_queue(store: Store, **limits: int) -> EventStore:
    """The store's EventQueue class with the store's settings, `limits` changed."""
    settings = store.settings
    options = {
        "max_pending": settings.queue_max_pending,
        "max_pending_per_owner": settings.queue_max_pending_per_owner,
        "max_attempts": settings.delivery_max_attempts,
        **limits,
    }
    return event_store(store.db, node=store.events.node, **options)


class OwnerIntegrations:
    """A real Service's integration methods addressed by owner string (as the webhook tests
    speak), plus its IntegrationRunner's `fire`: `create(owner, spec)`, `update`, `get`,
    `list`, `delete`, `logs`. `settings`/`runner_options` replace the runner (e.g. a short
    backoff, or other webhook settings than the store's)."""

    def __init__(self, store: Store, settings: Settings | None = None, **runner_options):
        self.service = Service(store)
        if settings is not None or runner_options:
            self.service.integration_runner.close()
            self.service.integration_runner = IntegrationRunner(
                store.secrets, settings or store.settings, **runner_options
            )
        self.runner = self.service.integration_runner
        self.integrations = store.integrations

    def _actor(self, owner: str) -> User:
        kind, name = owner.split(":", 1)
        assert kind == "user", "these tests act for users"
        identity = self.service.store.identity
        try:
            return identity.user(name)
        except NotFound:
            return identity.create_user(name)

    def create(self, owner: str, spec: dict):
        return self.service.create_integration(self._actor(owner), spec)

    def update(self, owner: str, ref: str, spec: dict):
        return self.service.update_integration(self._actor(owner), ref, spec)

    def get(self, owner: str, ref: str):
        return self.service.get_integration(self._actor(owner), ref)

    def list(self, owner: str):
        return self.service.list_integrations(self._actor(owner))

    def delete(self, owner: str, ref: str) -> None:
        self.service.delete_integration(self._actor(owner), ref)

    def logs(self, owner: str, ref: str, limit: int = 100):
        return self.service.integration_logs(self._actor(owner), ref, limit=limit)

    def fire(self, record, event: dict, **options):
        return self.runner.fire(record, event, **options)

    def close(self) -> None:
        self.runner.close()


def quick_benchmarks(workloads: str, out: Path, scratch: Path, *, timeout: int, **env: str) -> dict:
    """`python -m benchmarks --quick --only <workloads>` with its temporary homes under
    `scratch` and no LOGIC_* variable of the calling shell (plus `env`): the JSON it wrote."""
    root = Path(__file__).resolve().parents[1]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    full_env.update(env, TMPDIR=str(scratch))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", workloads, "--json", str(out)],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "targets met:" in done.stdout
    return json.loads(out.read_text())
