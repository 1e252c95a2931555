"""Test doubles: `RecordingHost` (an in-memory `Host` that records every callback) and
`run_source` (compile and run source in-process against one)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from dataclasses import dataclass
from typing import Any

from .compiler import CompiledFunction, compile_function
from .context import SecretAccessError
from .executor import RunLimits, RunOutcome, run_function
from .ledger import LedgerError


class RecordingHost:
    """Serves secrets from a dict (mutable between reads) and records logs, events and reads."""

    def __init__(self, secrets: dict[str, str] | None = None):
        self.secrets: dict[str, str] = dict(secrets or {})
        self.logs: list[tuple[str, str]] = []
        self.events: list[tuple[str, str | None]] = []
        self.reads: list[str] = []
        # ledgers: name -> {"updated_at", "data"}; a missing name is an unknown ledger
        self.ledgers: dict[str, dict] = {}
        self.ledger_calls: list[tuple[str, str, str | None, str | None]] = []
        self.masks: list[str] = []

    def read_secret(self, name: str) -> str:
        self.reads.append(name)
        if name not in self.secrets:
            raise SecretAccessError(f"secret {name!r} does not exist")
        return self.secrets[name]

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def publish(self, name: str, data: str | None) -> None:
        self.events.append((name, data))

    def mask(self, value: str) -> None:
        self.masks.append(value)

    def ledger(self, action: str, name: str, data_json: str | None, mode: str | None) -> dict:
        self.ledger_calls.append((action, name, data_json, mode))
        if name not in self.ledgers:
            raise LedgerError(f"ledger {name} does not exist")
        current = self.ledgers[name]
        if action == "set":
            data = json.loads(data_json or "{}")
            new = {**current["data"], **data} if mode == "merge" else data
            self.ledgers[name] = {"updated_at": "2024-01-01T00:00:00Z", "data": new}
        elif action == "delete":
            self.ledgers[name] = {"updated_at": None, "data": {}}
        return self.ledgers[name] if action == "get" else {}

    @property
    def messages(self) -> list[str]:
        return [message for _, message in self.logs]


@dataclass
class Ran:
    outcome: RunOutcome
    host: RecordingHost

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def result(self):
        return None if self.outcome.result_json is None else json.loads(self.outcome.result_json)

    @property
    def error(self) -> dict:
        return self.outcome.error or {}


def default_limits(**changes: int) -> RunLimits:
    """The run limits an operator gets by default (Settings()), with `changes`."""
    from store.settings import Settings

    return dataclasses.replace(RunLimits.from_settings(Settings()), **changes)


def compile_source(source: str, **options: Any) -> CompiledFunction:
    """compile_function with the default source limits unless `options` name them."""
    from store.settings import Settings

    defaults = Settings()
    options.setdefault("max_bytes", defaults.source_max_bytes)
    options.setdefault("max_depth", defaults.ast_max_depth)
    return compile_function(source, **options)


def run_source(
    source: str,
    *,
    context: dict | None = None,
    secrets: dict | None = None,
    declared: tuple[str, ...] = (),
    limits: RunLimits | None = None,
    host: RecordingHost | None = None,
    entry: str = "main",
) -> Ran:
    source = textwrap.dedent(source)
    fn = compile_source(source, declared_secrets=declared, entry=entry)
    host = host or RecordingHost(secrets)
    context = (
        {
            "event": {
                "id": "ev1",
                "name": "sensor",
                "data": '{"i": 7}',
                "published_at": "2024-01-01T00:00:00Z",
                "source": "test",
            }
        }
        if context is None
        else context
    )
    if limits is None:
        limits = default_limits()
    return Ran(run_function(fn, context, host, declared_secrets=declared, limits=limits), host)
