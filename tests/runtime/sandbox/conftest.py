"""Helpers for the sandbox tests: compile and run source in-process against a RecordingHost."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from runtime.sandbox import RunLimits, RunOutcome, compile_function, run_function
from runtime.sandbox.testing import RecordingHost


@dataclass
class Ran:
    outcome: RunOutcome
    host: RecordingHost

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def result(self):
        import json

        return None if self.outcome.result_json is None else json.loads(self.outcome.result_json)

    @property
    def error(self) -> dict:
        return self.outcome.error or {}


def run_source(source: str, *, context: dict | None = None, secrets: dict | None = None,
               declared: tuple[str, ...] = (), limits: RunLimits = RunLimits(),
               host: RecordingHost | None = None, entry: str = "main") -> Ran:
    source = textwrap.dedent(source)
    fn = compile_function(source, declared_secrets=declared, entry=entry)
    host = host or RecordingHost(secrets)
    context = {"event": {"id": "ev1", "name": "sensor", "data": "{\"i\": 7}",
                         "published_at": "2024-01-01T00:00:00Z", "source": "test"}} if context is None else context
    return Ran(run_function(fn, context, host, declared_secrets=declared, limits=limits), host)


@pytest.fixture
def run():
    return run_source
