"""The change audit: who changed what, when and from where, in a tamper-evident chain.

Each row records one change (a secret created, a function deployed, a token revoked,
the keys rotated...) with names, ids and version numbers, never a value. Rows are
appended inside the caller's transaction, so a change and its row commit together or
not at all. Their ids run 1, 2, 3... without gaps, and each row carries

    mac = HMAC-SHA256(K, canonical(id, at, actor, via, owner, action, target_kind,
                                   target, details) + the previous row's mac)

where K = HKDF-SHA256(a random audit key, "logic-runtime change audit chain v1"). The
audit key is made once and kept in `change_audit_key`, wrapped by the master key like
the data keys (keyring.py): `logic keys rotate` does not touch it and `--master`
re-wraps it, so every row verifies after any rotation, and whoever holds only the
database file (not the master key) cannot compute a mac.

What `verify` proves: every row from the start of the chain (or from the newest
checkpoint) to the head is exactly as written, in its place, none missing between
them; the head record (the newest id and mac, MACed, rewritten with every row) shows
whether rows were cut off the end. What it cannot prove: that the database was not
replaced by an older copy of itself (an older head is a genuine head), and anything
about a writer who holds the master key. Keep the head that `verify` prints somewhere
else to catch a rollback (`logic audit verify --head ID:MAC`).

Pruning (retention) drops the oldest rows only after checking them, and records a
checkpoint (the last pruned row's id and mac, MACed) where verification starts next.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .backend import Backend, Tx
from .errors import MasterKeyError
from .keyring import KeyRing

GENESIS_MAC = "0" * 64  # the "previous mac" of row 1
_CHUNK = 1000  # rows read at a time while verifying
# What a change may say about itself: names, ids, numbers, flags, lists of names.
_PLAIN = (str, int, bool, type(None))

log = logging.getLogger("logic.store")


@dataclass(frozen=True)
class Change:
    """One recorded change. `owner` is None for a machine-wide change (users, keys)."""

    id: int
    at: str
    actor: str
    via: str
    owner: str | None
    action: str
    target_kind: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "via": self.via,
            "owner": self.owner,
            "action": self.action,
            "target_kind": self.target_kind,
            "target": self.target,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Verification:
    """What `verify` found: ok, or the first bad row (by id) and what is wrong with it."""

    ok: bool
    rows: int  # rows checked, from the checkpoint (or the first row) on
    problem: str | None = None
    first_bad_id: int | None = None
    head_id: int = 0  # the newest row's id and mac (what an operator keeps to anchor the chain)
    head_mac: str = GENESIS_MAC
    checkpoint_id: int | None = None  # verification started after this row (pruned up to it)
    anchored: bool | None = None  # the kept head was found (False: pruned past it; None: none given)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "problem": self.problem,
            "first_bad_id": self.first_bad_id,
            "head": {"id": self.head_id, "mac": self.head_mac} if self.ok else None,
            "checkpoint": self.checkpoint_id,
            "anchored": self.anchored,
        }


class _Broken(Exception):
    def __init__(self, problem: str, first_bad_id: int | None = None):
        super().__init__(problem)
        self.problem = problem
        self.first_bad_id = first_bad_id
        self.checked = 0  # rows of the failing batch that verified before it


def _mac(key: bytes, *parts: object) -> str:
    # A JSON array: unambiguous (no separator a field could contain), and stable.
    payload = json.dumps(list(parts), ensure_ascii=True, separators=(",", ":"))
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).hexdigest()


def _row_mac(key: bytes, row: Any | dict[str, Any], prev_mac: str) -> str:
    return _mac(
        key,
        "change",
        row["id"],
        row["at"],
        row["actor"],
        row["via"],
        row["owner"],
        row["action"],
        row["target_kind"],
        row["target"],
        row["details"],
        prev_mac,
    )


def _checkpoint_mac(key: bytes, row: Any | dict[str, Any]) -> str:
    return _mac(key, "checkpoint", row["id"], row["at"], row["last_id"], row["last_mac"], row["rows_pruned"])


def _head_mac(key: bytes, last_id: int, last_mac: str) -> str:
    return _mac(key, "head", last_id, last_mac)


def _span(first: int, last: int) -> str:
    return f"row {first} was" if first == last else f"rows {first}-{last} were"


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a, b)


def check_details(details: dict[str, Any]) -> str:
    """The canonical JSON of a change's details; TypeError for anything but names, ids,
    numbers, flags and lists of them (a guard: a value object never slips into a row)."""
    for key, value in details.items():
        items = value if isinstance(value, list) else [value]
        if not isinstance(key, str) or not all(isinstance(v, _PLAIN) for v in items):
            raise TypeError(f"change detail {key!r}: only names, ids, numbers and flags are recorded")
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _change(row: Any | dict[str, Any]) -> Change:
    try:
        details = json.loads(row["details"])
    except ValueError:
        details = {}
    return Change(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        via=row["via"],
        owner=row["owner"],
        action=row["action"],
        target_kind=row["target_kind"],
        target=row["target"],
        details=details if isinstance(details, dict) else {},
    )


class ChangeStore:
    """ChangeRepository on SQLite: the chained rows, their checkpoints and head."""

    def __init__(self, db: Backend, ring: KeyRing):
        self.db = db
        self.ring = ring

    # writes ------------------------------------------------------------------

    def record(
        self,
        *,
        at: str,
        actor: str,
        via: str,
        owner: str | None,
        action: str,
        target_kind: str,
        target: str,
        details: dict[str, Any] | None = None,
    ) -> Change:
        """Append one row (inside the caller's transaction: it commits with the change)."""
        text = check_details(details or {})
        with self.db.transaction() as conn:
            self.db.lock("changes")  # one chain: concurrent writers (other nodes) append in turn
            key = self.ring.audit_mac_key(create=True)
            assert key is not None  # create=True always gives one
            prev_id, prev_mac = self._tip(conn, key)
            row_id = prev_id + 1
            row: dict[str, Any] = {
                "id": row_id,
                "at": at,
                "actor": actor,
                "via": via,
                "owner": owner,
                "action": action,
                "target_kind": target_kind,
                "target": target,
                "details": text,
            }
            mac = _row_mac(key, row, prev_mac)
            conn.execute(
                "INSERT INTO changes (id, at, actor, via, owner, action, target_kind, target, details, mac) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row.values(), mac),
            )
            self._set_head(conn, key, row_id, mac)
        return _change(row)

    def _tip(self, conn: Tx, key: bytes) -> tuple[int, str]:
        """Where the next row links: the furthest of the head, the newest row and the newest
        checkpoint. Following a genuine head (not just the newest row) keeps a gap where rows
        were cut off the end, so a later write does not hide the cut."""
        tips: list[tuple[int, int, str]] = [(0, 0, GENESIS_MAC)]
        head = conn.execute("SELECT last_id, last_mac, mac FROM change_head WHERE id = 1").fetchone()
        if head is not None and _same(head["mac"], _head_mac(key, head["last_id"], head["last_mac"])):
            tips.append((head["last_id"], 3, head["last_mac"]))
        last = conn.execute("SELECT id, mac FROM changes ORDER BY id DESC LIMIT 1").fetchone()
        if last is not None:
            tips.append((last["id"], 2, last["mac"]))
        checkpoint = conn.execute(
            "SELECT last_id, last_mac FROM change_checkpoints ORDER BY last_id DESC LIMIT 1"
        ).fetchone()
        if checkpoint is not None:
            tips.append((checkpoint["last_id"], 1, checkpoint["last_mac"]))
        last_id, _rank, last_mac = max(tips)
        return last_id, last_mac

    @staticmethod
    def _set_head(conn: Tx, key: bytes, last_id: int, last_mac: str) -> None:
        conn.execute(
            "INSERT INTO change_head (id, last_id, last_mac, mac) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET "
            "last_id = excluded.last_id, last_mac = excluded.last_mac, mac = excluded.mac",
            (last_id, last_mac, _head_mac(key, last_id, last_mac)),
        )

    def prune(self, before: str, *, now: str, limit: int = 10_000) -> int:
        """Drop the oldest rows recorded before `before` (a prefix of the chain, at most
        `limit`), after checking them, and record a checkpoint; how many went. A chain that
        does not verify up to there is left as it is (pruning never erases the evidence)."""
        with self.db.transaction() as conn:
            self.db.lock("changes")
            key = self.ring.audit_mac_key()
            if key is None:
                return 0
            first_kept = conn.execute("SELECT MIN(id) FROM changes WHERE at >= ?", (before,)).fetchone()[0]
            sql = "SELECT * FROM changes" + (" WHERE id < ?" if first_kept is not None else "") + " ORDER BY id LIMIT ?"
            params = (first_kept, limit) if first_kept is not None else (limit,)
            doomed = conn.execute(sql, params).fetchall()
            if not doomed:
                return 0
            try:
                start_id, start_mac, _ = self._start(conn, key)
                self._check(key, doomed, start_id, start_mac)
            except _Broken as broken:
                log.warning("change audit not pruned: it does not verify (%s)", broken.problem)
                return 0
            last = doomed[-1]
            checkpoint = {"at": now, "last_id": last["id"], "last_mac": last["mac"], "rows_pruned": len(doomed)}
            checkpoint_id = conn.execute(
                "INSERT INTO change_checkpoints (at, last_id, last_mac, rows_pruned, mac) "
                "VALUES (?, ?, ?, ?, '') RETURNING id",
                (now, last["id"], last["mac"], len(doomed)),
            ).fetchone()[0]
            conn.execute(
                "UPDATE change_checkpoints SET mac = ? WHERE id = ?",
                (_checkpoint_mac(key, {**checkpoint, "id": checkpoint_id}), checkpoint_id),
            )
            conn.execute("DELETE FROM changes WHERE id <= ?", (last["id"],))
            return len(doomed)

    # reads -------------------------------------------------------------------

    def list(
        self,
        owner: str,
        *,
        machine_wide: bool = False,
        target_kind: str | None = None,
        target: str | None = None,
        limit: int = 1000,
        before_id: int | None = None,
    ) -> builtins.list[Change]:
        """Newest first: the owner's changes (and, with `machine_wide`, the rows of no owner:
        users, keys), optionally of one target; with `before_id`, the page after that row."""
        sql = "SELECT * FROM changes WHERE (owner = ?" + (" OR owner IS NULL)" if machine_wide else ")")
        params: builtins.list[str | int] = [owner]
        if target_kind is not None:
            sql += " AND target_kind = ?"
            params.append(target_kind)
        if target is not None:
            sql += " AND target = ?"
            params.append(target)
        if before_id is not None:
            sql += " AND id < ?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_change(r) for r in self.db.all(sql, params)]

    def verify(self, anchor: tuple[int, str] | None = None) -> Verification:
        """Check the whole chain: the first row edited, removed, reordered or inserted (by
        id), a forged checkpoint or head; else ok with the number of rows checked. With
        `anchor` (a head printed by an earlier verify, kept elsewhere), also that this row is
        still in the chain as it was: a rolled-back or truncated database fails here."""
        # One read transaction (SQLite's WAL, PostgreSQL's REPEATABLE READ: a snapshot that
        # writers do not disturb or wait for), so rows appended while we read cannot look
        # like a head without its rows.
        with self.db.snapshot() as conn:
            return self._verify(conn, anchor)

    def _verify(self, conn: Tx, anchor: tuple[int, str] | None) -> Verification:
        count = 0
        checkpoint_id: int | None = None
        head_id, head_mac = 0, GENESIS_MAC
        anchored: bool | None = None if anchor is None else False
        try:
            try:
                key = self.ring.audit_mac_key()
            except MasterKeyError:
                raise _Broken("the change audit's key does not unwrap under the master key: it was edited") from None
            if key is None:
                if self.db.one(
                    "SELECT 1 FROM changes UNION ALL SELECT 1 FROM change_head "
                    "UNION ALL SELECT 1 FROM change_checkpoints LIMIT 1"
                ):
                    raise _Broken("the change audit's key is missing: no row can be verified")
                if anchor is not None:
                    # Threat: the key, the rows and the head all deleted look like a store that
                    # never recorded a change; a head kept elsewhere says otherwise.
                    raise _Broken(
                        f"the change audit is empty (no key, no row), but row {anchor[0]} was kept as its head: "
                        "it was removed or the database was replaced",
                        1,
                    )
                return Verification(ok=True, rows=0)
            prev_id, prev_mac, checkpoint_id = self._start(conn, key)
            head_id, head_mac = prev_id, prev_mac
            if anchor is not None and anchor[0] <= prev_id:
                # Pruned past it: only the checkpoint's own row can still be compared.
                anchored = anchor[0] == prev_id and self._anchor_holds(anchor, prev_id, prev_mac)
            for chunk in self._chunks(prev_id):
                prev_id, prev_mac = self._check(key, chunk, prev_id, prev_mac)
                count += len(chunk)
                head_id, head_mac = prev_id, prev_mac
                if anchor is not None and chunk[0]["id"] <= anchor[0] <= prev_id:
                    row = next(r for r in chunk if r["id"] == anchor[0])
                    anchored = self._anchor_holds(anchor, row["id"], row["mac"])
            self._check_head(conn, key, prev_id, prev_mac)
            if anchor is not None and anchor[0] > prev_id:
                raise _Broken(
                    f"the chain ends at row {prev_id}, before the kept head (row {anchor[0]}): "
                    "rows were removed or the database was rolled back",
                    prev_id + 1,
                )
        except _Broken as broken:
            return Verification(
                ok=False,
                rows=count + broken.checked,
                problem=broken.problem,
                first_bad_id=broken.first_bad_id,
                head_id=head_id,
                head_mac=head_mac,
                checkpoint_id=checkpoint_id,
            )
        return Verification(
            ok=True, rows=count, head_id=head_id, head_mac=head_mac, checkpoint_id=checkpoint_id, anchored=anchored
        )

    @staticmethod
    def _anchor_holds(anchor: tuple[int, str], row_id: int, mac: str) -> bool:
        if not _same(anchor[1].lower(), mac):
            raise _Broken(f"row {row_id} is not the row kept as the head: its MAC differs", row_id)
        return True

    def _chunks(self, after_id: int) -> Iterator[builtins.list[Any]]:
        while True:
            rows = self.db.all("SELECT * FROM changes WHERE id > ? ORDER BY id LIMIT ?", (after_id, _CHUNK))
            if not rows:
                return
            yield rows
            after_id = rows[-1]["id"]

    def _start(self, conn: Tx, key: bytes) -> tuple[int, str, int | None]:
        """(id, mac) the chain continues from: the newest checkpoint, else the genesis; every
        checkpoint must be genuine, and no row may lie at or before the one started from."""
        start_id, start_mac, checkpoint_id = 0, GENESIS_MAC, None
        for cp in conn.execute("SELECT * FROM change_checkpoints ORDER BY last_id, id").fetchall():
            if not _same(cp["mac"], _checkpoint_mac(key, cp)):
                raise _Broken(
                    f"checkpoint {cp['id']} (rows up to {cp['last_id']} pruned) is not genuine: its MAC does not match",
                    cp["last_id"],
                )
            start_id, start_mac, checkpoint_id = cp["last_id"], cp["last_mac"], cp["last_id"]
        oldest = conn.execute("SELECT MIN(id) FROM changes").fetchone()[0]
        if oldest is not None and oldest <= start_id:
            where = "the start of the chain" if checkpoint_id is None else f"the checkpoint after row {start_id}"
            raise _Broken(f"row {oldest} lies before {where}: it was inserted", oldest)
        return start_id, start_mac, checkpoint_id

    @staticmethod
    def _check(key: bytes, rows: Iterable[Any], prev_id: int, prev_mac: str) -> tuple[int, str]:
        for checked, row in enumerate(rows):
            expected = prev_id + 1
            broken = None
            if row["id"] != expected:
                hint = " (pruned without a checkpoint?)" if prev_id == 0 else ""
                broken = _Broken(f"{_span(expected, row['id'] - 1)} removed before row {row['id']}{hint}", expected)
            elif not _same(row["mac"], _row_mac(key, row, prev_mac)):
                broken = _Broken(
                    f"row {row['id']} was edited, moved or inserted: its MAC does not match its content and place",
                    row["id"],
                )
            if broken is not None:
                broken.checked = checked
                raise broken
            prev_id, prev_mac = row["id"], row["mac"]
        return prev_id, prev_mac

    @staticmethod
    def _check_head(conn: Tx, key: bytes, last_id: int, last_mac: str) -> None:
        head = conn.execute("SELECT last_id, last_mac, mac FROM change_head WHERE id = 1").fetchone()
        if head is None:
            # The key is made by the first row, in the transaction that also writes the head
            # (record), so a key without a head means the head was deleted -- with every row
            # too when last_id is 0 (threat: the whole chain wiped verified as empty).
            raise _Broken("the head record is missing: rows may have been removed from the end")
        if not _same(head["mac"], _head_mac(key, head["last_id"], head["last_mac"])):
            raise _Broken("the head record is not genuine: its MAC does not match")
        if head["last_id"] > last_id:
            raise _Broken(f"{_span(last_id + 1, head['last_id'])} removed from the end of the chain", last_id + 1)
        if head["last_id"] < last_id:
            raise _Broken(f"row {head['last_id'] + 1} is past the head: it was inserted", head["last_id"] + 1)
        if not _same(head["last_mac"], last_mac):
            raise _Broken(f"row {last_id} does not match the head record", last_id)


__all__ = ["Change", "ChangeStore", "Verification", "GENESIS_MAC", "check_details"]
