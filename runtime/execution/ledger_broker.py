"""The ledger broker: the parent's side of `logic.ledger(name)` for one run.

The worker asks; the broker answers for the run's owner only (threat: a
compromised worker naming another tenant's ledger: there is no owner in the
request to forge), checks the name and the 16 KiB limit on every `set` (an
error the function can catch), and buffers the writes. Reads see the run's
own pending writes. `commit`, inside the run's transaction, folds each
ledger's writes onto its row as it is *then* (so concurrent merges of
different keys both land), masks every secret value the run read
(`[[SENSITIVE]]`: ledger data is readable by anyone with the ledger, never a
channel for a secret), checks the limit again and writes one new version
per ledger. A run that ends in error, timeout or crash never commits.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.execution.redactor import Redactor
from runtime.sandbox.executor import LedgerError
from store.clock import now_iso
from store.errors import InvalidInput, LogicError, NotFound
from store.ledgers import LedgerChange, check_data, check_ledger_name
from store.repositories import LedgerRepository

_MODES = ("replace", "merge")


class LedgerBroker:
    """`logic.ledger(...)` calls of one run: check, answer, buffer; commit in the run's transaction."""

    def __init__(self, ledgers: LedgerRepository, *, owner: str):
        self._ledgers = ledgers
        self.owner = owner
        self._views: dict[str, dict[str, Any]] = {}  # name -> what this run sees now
        self.pending: list[tuple[str, str, dict[str, Any] | None]] = []  # (name, mode, data) in order

    def call(self, action: str, name: str, data_json: str | None, mode: str | None) -> dict[str, Any]:
        try:
            check_ledger_name(name)
            view = self._view(name)
            if action == "get":
                return {"updated_at": view["updated_at"], "data": view["data"]}
            if action == "delete":
                self._views[name] = {"updated_at": None, "data": {}}
                self.pending.append((name, "delete", None))
                return {}
            if action != "set" or mode not in _MODES:
                raise InvalidInput("ledger set takes mode logic.REPLACE or logic.MERGE")
            data = _parse(data_json)
            check_data(data, max_bytes=self._ledgers.max_bytes)
            new = {**view["data"], **data} if mode == "merge" else data
            check_data(new, max_bytes=self._ledgers.max_bytes)
        except LogicError as exc:
            raise LedgerError(exc.message) from None
        self._views[name] = {"updated_at": now_iso(), "data": new}
        self.pending.append((name, mode, data))
        return {}

    def _view(self, name: str) -> dict[str, Any]:
        if name not in self._views:
            try:
                record = self._ledgers.get(self.owner, name)
            except NotFound:
                raise LedgerError(
                    f"ledger {name} does not exist: create it with `logic ledgers create {name}`"
                ) from None
            self._views[name] = {"updated_at": record.updated_at, "data": record.data}
        return self._views[name]

    def commit(self, redactor: Redactor) -> tuple[list[LedgerChange], list[str]]:
        """Apply the buffered writes (inside the caller's transaction). All or nothing: a
        problem with any ledger (archived since, or over the limit now) writes none of them
        and is returned for the run's record."""
        finals: dict[str, tuple[str, dict[str, Any]]] = {}  # name -> (last action, data), in write order
        problems = []
        rows: dict[str, dict[str, Any]] = {}
        # The rows now, not what the run read, locked until the run's record commits, in name
        # order: two runs (two nodes) writing the same ledgers in opposite orders would each
        # hold a row the other waits for (a deadlock on PostgreSQL; one run's commit fails).
        for name in sorted({n for n, _, _ in self.pending}):
            try:
                rows[name] = self._ledgers.get(self.owner, name, for_write=True).data
            except NotFound:
                problems.append(f"ledger {name} was archived while the run wrote to it: nothing was saved")
        for name in dict.fromkeys(n for n, _, _ in self.pending):
            if name not in rows:
                continue
            data = rows[name]
            action = "set"
            for n, mode, patch in self.pending:
                if n != name:
                    continue
                action = "delete" if mode == "delete" else "set"
                data = {} if patch is None else {**data, **patch} if mode == "merge" else patch
            data = redactor.redact_json(data)
            try:
                check_data(data, max_bytes=self._ledgers.max_bytes)
            except LogicError as exc:
                problems.append(f"ledger {name} not saved: {exc.message}")
                continue
            finals[name] = (action, data)
        if problems:
            return [], problems
        changes = []
        for name, (action, data) in finals.items():
            if action == "delete" and not data:
                _record, change = self._ledgers.write(self.owner, name, "delete")
            else:
                _record, change = self._ledgers.write(self.owner, name, "replace", data)
            changes.append(change)
        return changes, []


def _parse(data_json: str | None) -> Any:
    if data_json is None:
        raise InvalidInput("ledger set needs data")
    try:
        return json.loads(data_json)
    except (ValueError, RecursionError):
        raise InvalidInput("ledger data is not valid JSON") from None
