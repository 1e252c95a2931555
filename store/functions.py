"""Logic functions, their versions and triggers, and their run records.

Each deploy adds a version; the function row points at the current one.
Run records are stored whole (already redacted by the runtime). Only the
newest `runs_kept` per function are listed; older ones are deleted on the
first run of the function in a process and every `prune_every` runs after it
(16, or an eighth of `runs_kept` when that is more), not on every run: the
delete walks the function's `runs_kept` newest index entries, so pruning after
a fixed 16 runs cost each run `runs_kept / 16` entries (with 10,000 kept,
about 1 ms a run); after an eighth, at most 8 entries a run, and at most an
eighth more rows than `runs_kept` wait for their prune.
"""

from __future__ import annotations

import builtins
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from .backend import INTEGRITY_ERRORS, Backend, for_update
from .clock import now_iso
from .errors import Conflict, DecryptionError, NotFound
from .secrets import SecretStore


@dataclass(frozen=True)
class FunctionRecord:
    id: str
    owner: str
    name: str
    enabled: bool
    version: int
    created_at: str
    updated_at: str
    manifest: dict[str, Any]
    source: str

    @property
    def version_key(self) -> str:
        return f"{self.id}:{self.version}"

    def to_json(self, *, with_source: bool = False) -> dict[str, Any]:
        data = {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "enabled": self.enabled,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "description": self.manifest.get("description", ""),
            "entry": self.manifest.get("entry", "main"),
            "secrets": list(self.manifest.get("secrets", [])),
            "triggers": list(self.manifest.get("triggers", [])),
            "limits": self.manifest.get("limits"),
        }
        if with_source:
            data["source"] = self.source
        return data


@dataclass(frozen=True)
class TriggerRow:
    """One trigger of the current version. A schedule's `next_fire_at` is None once its
    window (`start_at`..`end_at`, ISO 8601 UTC) is over; a disabled trigger never matches
    an event nor fires a tick."""

    kind: str
    event_name: str | None = None
    cron: str | None = None
    timezone: str | None = None
    next_fire_at: str | None = None
    enabled: bool = True
    start_at: str | None = None
    end_at: str | None = None
    ledger_name: str | None = None  # kind "ledger_change": the ledger, and "set"/"delete" or None for both
    change_type: str | None = None


_SELECT = (
    "SELECT f.id, f.owner, f.name, f.enabled, f.version, f.created_at, f.updated_at, v.manifest, v.source "
    "FROM functions f JOIN function_versions v ON v.function_id = f.id AND v.version = f.version "
)


def _record(row: Any) -> FunctionRecord:
    return FunctionRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6], json.loads(row[7]), row[8])


_PRUNE_EVERY = 16  # runs between prunes, at least
_PRUNE_SHARE = 8  # ... or runs_kept / this: what a prune walks, shared by the runs before it


class FunctionStore:
    """FunctionRepository on SQLite."""

    def __init__(self, db: Backend, secrets: SecretStore, *, runs_kept: int):
        self.db = db
        self.secrets = secrets
        self.runs_kept = max(1, runs_kept)
        self.prune_every = max(_PRUNE_EVERY, self.runs_kept // _PRUNE_SHARE)
        self._unpruned: dict[str, int] = {}  # runs added per function since its last prune (this process)
        self._unpruned_lock = threading.Lock()

    def deploy(
        self,
        owner: str,
        name: str,
        manifest: dict[str, Any],
        source: str,
        triggers: Iterable[TriggerRow],
        secret_names: Iterable[str],
    ) -> FunctionRecord:
        """Create the function or add a version; replace its triggers and declared secrets."""
        now = now_iso()
        enabled = int(manifest.get("enabled", True))
        lock = for_update(self.db)  # concurrent deploys of one function (other nodes) go in turn
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT id, version FROM functions WHERE owner = ? AND name = ?" + lock, (owner, name)
            ).fetchone()
            if row is None:
                fid, version = str(uuid.uuid4()), 1
                try:
                    conn.execute(
                        "INSERT INTO functions (id, owner, name, enabled, version, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (fid, owner, name, enabled, version, now, now),
                    )
                except INTEGRITY_ERRORS:
                    raise Conflict(
                        f"function {name} was deployed at the same time by another request: try again"
                    ) from None
            else:
                fid, version = row[0], row[1] + 1
                conn.execute(
                    "UPDATE functions SET version = ?, enabled = ?, updated_at = ? WHERE id = ?",
                    (version, enabled, now, fid),
                )
            conn.execute(
                "INSERT INTO function_versions (function_id, version, manifest, source, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (fid, version, json.dumps(manifest), source, now),
            )
            # A schedule the new version keeps keeps its next tick: a redeploy must neither
            # skip a tick that is due nor fire one twice. A changed window starts afresh
            # (a window that was over has no next tick, which a longer one must not keep).
            kept = {
                (r[0], r[1], r[2], r[3]): r[4]
                for r in conn.execute(
                    # Locked: a scheduler's tick in flight commits first, and its advance is kept.
                    "SELECT cron, timezone, start_at, end_at, next_fire_at FROM triggers "
                    "WHERE function_id = ? AND kind = 'schedule'" + lock,
                    (fid,),
                )
            }
            conn.execute("DELETE FROM triggers WHERE function_id = ?", (fid,))
            conn.executemany(
                "INSERT INTO triggers (function_id, kind, event_name, cron, timezone, next_fire_at, "
                "enabled, start_at, end_at, ledger_name, change_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        fid,
                        t.kind,
                        t.event_name,
                        t.cron,
                        t.timezone,
                        kept.get((t.cron, t.timezone, t.start_at, t.end_at), t.next_fire_at),
                        int(t.enabled),
                        t.start_at,
                        t.end_at,
                        t.ledger_name,
                        t.change_type,
                    )
                    for t in triggers
                ],
            )
            self.secrets.set_usages(owner, "logic_function", fid, name, secret_names)
        return self.get_by_id(fid)

    def get(self, owner: str, name: str) -> FunctionRecord:
        row = self.db.one(_SELECT + "WHERE f.owner = ? AND f.name = ?", (owner, name))
        if row is None:
            raise NotFound(f"function {name} does not exist")
        return _record(row)

    def get_by_id(self, function_id: str) -> FunctionRecord:
        row = self.db.one(_SELECT + "WHERE f.id = ?", (function_id,))
        if row is None:
            raise NotFound(f"function {function_id} does not exist")
        return _record(row)

    def get_version(self, function_id: str, version: int) -> FunctionRecord:
        row = self.db.one(
            "SELECT f.id, f.owner, f.name, f.enabled, v.version, f.created_at, v.created_at, v.manifest, v.source "
            "FROM functions f JOIN function_versions v ON v.function_id = f.id "
            "WHERE f.id = ? AND v.version = ?",
            (function_id, version),
        )
        if row is None:
            raise NotFound(f"function {function_id} has no version {version}")
        return _record(row)

    def list(self, owner: str) -> list[FunctionRecord]:
        return [_record(r) for r in self.db.all(_SELECT + "WHERE f.owner = ? ORDER BY f.name", (owner,))]

    def versions(self, function_id: str) -> builtins.list[dict[str, Any]]:
        """Every version of the function, newest first: version, created_at, description."""
        return [
            {"version": r[0], "created_at": r[1], "description": json.loads(r[2]).get("description", "")}
            for r in self.db.all(
                "SELECT version, created_at, manifest FROM function_versions WHERE function_id = ? "
                "ORDER BY version DESC",
                (function_id,),
            )
        ]

    def triggers(self, function_id: str) -> builtins.list[TriggerRow]:
        """The current version's triggers, schedule ones with their next fire time."""
        return [
            TriggerRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], r[9])
            for r in self.db.all(
                "SELECT kind, event_name, cron, timezone, next_fire_at, enabled, start_at, end_at, ledger_name, "
                "change_type FROM triggers WHERE function_id = ? ORDER BY id",
                (function_id,),
            )
        ]

    def set_enabled(self, function_id: str, enabled: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE functions SET enabled = ?, updated_at = ? WHERE id = ?", (int(enabled), now_iso(), function_id)
            )

    def delete(self, function_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM secret_usages WHERE consumer_kind = 'logic_function' AND consumer_id = ?", (function_id,)
            )
            if conn.execute("DELETE FROM functions WHERE id = ?", (function_id,)).rowcount == 0:
                raise NotFound(f"function {function_id} does not exist")

    def for_event(self, owner: str, event_name: str) -> builtins.list[str]:
        """Ids of the owner's enabled functions with an enabled event trigger whose name equals
        the event's exactly."""
        return [
            r[0]
            for r in self.db.all(
                "SELECT DISTINCT f.id FROM triggers t JOIN functions f ON f.id = t.function_id "
                "WHERE t.kind = 'event' AND t.event_name = ? AND t.enabled = 1 AND f.owner = ? AND f.enabled = 1",
                (event_name, owner),
            )
        ]

    def for_ledger(self, owner: str, ledger_name: str, change_type: str) -> builtins.list[str]:
        """Ids of the owner's enabled functions with an enabled ledger_change trigger on this
        ledger, for this kind of change (a trigger without change_type takes both)."""
        return [
            r[0]
            for r in self.db.all(
                "SELECT DISTINCT f.id FROM triggers t JOIN functions f ON f.id = t.function_id "
                "WHERE t.kind = 'ledger_change' AND t.ledger_name = ? AND (t.change_type IS NULL OR "
                "t.change_type = ?) AND t.enabled = 1 AND f.owner = ? AND f.enabled = 1",
                (ledger_name, change_type, owner),
            )
        ]

    # runs --------------------------------------------------------------------

    def add_run(
        self, record: dict[str, Any], *, owner: str | None = None, trigger_input: dict[str, Any] | None = None
    ) -> None:
        """Store a redacted run record, with its raw trigger input (for replay) sealed under
        the key ring for `owner`; on the function's first run in this process and every
        `prune_every` runs after it, drop the oldest beyond `runs_kept` (caller's transaction)."""
        if trigger_input is not None and owner is None:
            raise ValueError("a run's input is sealed for its owner: pass owner")
        function_id = record["function_id"]
        with self._unpruned_lock:
            # The first run of a function in this process prunes too: a process that runs it
            # fewer than prune_every times (a CLI run, a restarted server) must not skip it.
            every = self.prune_every
            count = self._unpruned[function_id] = self._unpruned.get(function_id, every - 1) + 1
            prune = count >= every
            if prune:
                self._unpruned[function_id] = 0
        with self.db.transaction() as conn:
            sealed = None
            if trigger_input is not None:
                # Sealed inside the write transaction, after catching up with a rotation made by
                # another process: a data key it dropped would leave this input undecryptable.
                ring = self.secrets.ring
                ring.refresh()
                sealed = ring.seal(json.dumps(trigger_input), cast(str, owner), _input_name(record["id"]))
            try:
                conn.execute(
                    "INSERT INTO runs (id, function_id, function_version, status, started_at, record, input, "
                    "replay_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record["id"],
                        function_id,
                        record["function_version"],
                        record["status"],
                        record["started_at"],
                        json.dumps(record),
                        sealed,
                        record.get("replay_of"),
                    ),
                )
            except INTEGRITY_ERRORS:  # the foreign key: the function was deleted meanwhile
                raise NotFound(f"function {function_id} does not exist") from None
            if prune:
                self.prune_runs(function_id)

    def prune_runs(self, function_id: str) -> int:
        """Delete the function's runs past the newest `runs_kept`; how many went."""
        with self.db.transaction() as conn:
            # Everything past the Nth newest goes, in the order `runs()` lists them: runs that
            # share a start time (a coarse or frozen clock) are told apart by insertion order.
            order = "rowid" if self.db.dialect == "sqlite" else "seq"  # insertion order (v14)
            return cast(
                int,
                conn.execute(
                    f"DELETE FROM runs WHERE function_id = ? AND {order} NOT IN (SELECT {order} FROM runs "
                    f"WHERE function_id = ? ORDER BY started_at DESC, {order} DESC LIMIT ?)",
                    (function_id, function_id, self.runs_kept),
                ).rowcount,
            )

    def runs(
        self, function_id: str, limit: int = 100, *, before: tuple[str, str] | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The newest runs, at most `runs_kept` (older ones may wait for their prune); with
        `before` (started_at, id), the ones after that run in this order (the next page)."""
        sql, params = "SELECT record FROM runs WHERE function_id = ?", [function_id]
        if before is not None:
            sql += " AND (started_at, id) < (?, ?)"
            params += list(before)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        return [json.loads(r[0]) for r in self.db.all(sql, (*params, min(limit, self.runs_kept)))]

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT record FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise NotFound(f"run {run_id} does not exist")
        return cast("dict[str, Any]", json.loads(row[0]))  # a run record, stored by add_run

    # run inputs (replay) and counts ----------------------------------------------
    # A run's raw trigger input is sealed like a secret value, its associated data naming
    # the owner and "run-input:<run id>" (never a secret's name: those have no ":"), so an
    # input copied to another run or owner fails to decrypt.

    def run_input(self, run_id: str) -> dict[str, Any] | None:
        """The raw trigger input of a run; None for a run stored without one (before
        migration 13, or a record added without it). DecryptionError if it was altered."""
        row = self.db.one(
            "SELECT CAST(r.input AS BLOB), f.owner FROM runs r JOIN functions f ON f.id = r.function_id WHERE r.id = ?",
            (run_id,),
        )
        if row is None:
            raise NotFound(f"run {run_id} does not exist")
        if row[0] is None:
            return None
        try:
            plain = self.secrets.ring.unseal(row[0], row[1], _input_name(run_id))
        except DecryptionError:
            raise DecryptionError(
                f"the input of run {run_id} cannot be decrypted: it was altered, moved from another run, "
                "or its data key is gone"
            ) from None
        return cast("dict[str, Any]", json.loads(plain.reveal()))

    def reencrypt_run_inputs(self, key_id: int) -> int:
        """Re-seal every run's input under `key_id` (inside the caller's transaction, with the
        secrets: key rotation drops the old data keys right after); how many were re-sealed.

        An input that no longer decrypts (altered, or moved from another run) is dropped, not
        a reason to refuse the rotation: it could never be replayed anyway, and its run then
        says it has no recorded input."""
        ring, count = self.secrets.ring, 0
        with self.db.transaction() as conn:
            for run_id, blob, owner in conn.execute(
                "SELECT r.id, CAST(r.input AS BLOB), f.owner FROM runs r JOIN functions f ON f.id = r.function_id "
                "WHERE r.input IS NOT NULL"
            ).fetchall():
                try:
                    plain = ring.unseal(blob, owner, _input_name(run_id))
                except DecryptionError:
                    conn.execute("UPDATE runs SET input = NULL WHERE id = ?", (run_id,))
                    continue
                conn.execute(
                    "UPDATE runs SET input = ? WHERE id = ?",
                    (ring.seal(plain.reveal(), owner, _input_name(run_id), key_id=key_id), run_id),
                )
                count += 1
        return count

    def run_counts(self, owner: str, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per function of `owner`: how many of its kept runs started in [start, end), by status."""
        counts: dict[str, dict[str, int]] = {}
        for function_id, status, n in self.db.all(
            "SELECT r.function_id, r.status, COUNT(*) FROM functions f JOIN runs r ON r.function_id = f.id "
            "WHERE f.owner = ? AND r.started_at >= ? AND r.started_at < ? GROUP BY r.function_id, r.status",
            (owner, start, end),
        ):
            counts.setdefault(function_id, {})[status] = n
        return counts


def _input_name(run_id: str) -> str:
    return f"run-input:{run_id}"
