"""Ledgers: an owner's named JSON state between runs (Particle's Cloud Ledger).

A ledger's name is lower-case letters, digits and dashes (at most 32); it
holds one JSON object of at most `max_bytes` as compact JSON, checked on
every write. Every write keeps the data it replaced as a version (unless the
ledger was empty: nothing was replaced), and the newest `versions_kept` of
them are kept. A merge replaces top-level keys of the data as it is in the
row at the moment of the write, inside the write's transaction (BEGIN
IMMEDIATE), so two concurrent merges of different keys both land.
Redacting what a run writes is the runtime's job, before it gets here.
"""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from .backend import INTEGRITY_ERRORS, Backend, check_text, for_update
from .clock import now_iso
from .errors import Conflict, InvalidInput, NotFound, TooLarge

NAME_PATTERN = re.compile(r"[a-z0-9-]+")
NAME_MAX_CHARS = 32
DESCRIPTION_MAX_CHARS = 1024
NESTING_MAX = 32  # levels of objects and lists in ledger data (copying and redacting recurse)
WriteMode = Literal["replace", "merge", "delete"]
MODES: tuple[WriteMode, ...] = ("replace", "merge", "delete")


@dataclass(frozen=True)
class LedgerRecord:
    owner: str
    name: str
    description: str
    created_at: str
    updated_at: str | None  # None while the ledger holds no data
    data: dict[str, Any]
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "size_bytes": self.size_bytes,
            "data": self.data,
        }


@dataclass(frozen=True)
class LedgerChange:
    """One committed write, as a ledger_change trigger sees it."""

    owner: str
    name: str
    change_type: Literal["set", "delete"]
    changed_at: str
    data: dict[str, Any]


def check_ledger_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput("ledger name must not be empty")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidInput(f"ledger name must be at most {NAME_MAX_CHARS} characters, not {len(name)}")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(f"invalid ledger name {name[:40]!r}: use lower-case letters, digits and dashes")
    return name


def check_data(data: object, *, max_bytes: int) -> str:
    """Ledger data as compact JSON text: a JSON object, finite numbers, at most `max_bytes`."""
    if not isinstance(data, dict):
        raise InvalidInput(f"ledger data must be a JSON object, not {_kind(data)}")
    _check_shape(data)
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise InvalidInput(f"ledger data is not valid JSON: {str(exc)[:100]}") from None
    if size > max_bytes:
        raise TooLarge(f"ledger data is {size} bytes as JSON; the limit is {max_bytes} bytes")
    return text


def _check_shape(data: object) -> None:
    """JSON types only (str keys), nested at most NESTING_MAX deep; no recursion."""
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth >= NESTING_MAX:
                raise InvalidInput(f"ledger data is nested deeper than {NESTING_MAX} levels")
            for key, value in node.items():
                if not isinstance(key, str):
                    raise InvalidInput("ledger data keys must be strings")
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth >= NESTING_MAX:
                raise InvalidInput(f"ledger data is nested deeper than {NESTING_MAX} levels")
            stack.extend((item, depth + 1) for item in node)
        elif not (node is None or isinstance(node, (str, bool, int, float))):
            raise InvalidInput(f"ledger data holds {_kind(node)}, which is not a JSON value")


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


_SELECT = "SELECT id, name, description, created_at, updated_at, data FROM ledgers "


class LedgerStore:
    """LedgerRepository on SQLite."""

    def __init__(self, db: Backend, *, max_bytes: int, versions_kept: int):
        self.db = db
        self.max_bytes = max_bytes
        self.versions_kept = versions_kept

    # definitions -------------------------------------------------------------

    def create(self, owner: str, name: str, description: str = "") -> LedgerRecord:
        check_ledger_name(name)
        description = _check_description(description)
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO ledgers (owner, name, description, created_at) VALUES (?, ?, ?, ?)",
                    (owner, name, description, now_iso()),
                )
        except INTEGRITY_ERRORS:
            raise Conflict(f"ledger {name} already exists") from None
        return self.get(owner, name)

    def describe(self, owner: str, name: str, description: str) -> LedgerRecord:
        description = _check_description(description)
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE ledgers SET description = ? WHERE owner = ? AND name = ?", (description, owner, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"ledger {name} does not exist")
        return self.get(owner, name)

    def archive(self, owner: str, name: str) -> None:
        """Delete the ledger with its data and versions."""
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM ledgers WHERE owner = ? AND name = ?", (owner, name)).rowcount == 0:
                raise NotFound(f"ledger {name} does not exist")

    def exists(self, owner: str, name: str) -> bool:
        return self.db.one("SELECT 1 FROM ledgers WHERE owner = ? AND name = ?", (owner, name)) is not None

    def get(self, owner: str, name: str, *, for_write: bool = False) -> LedgerRecord:
        """With `for_write` (inside a transaction), the row is locked until it commits: a
        read-modify-write by another node waits instead of losing this one's update."""
        lock = for_update(self.db) if for_write else ""
        row = self.db.one(_SELECT + "WHERE owner = ? AND name = ?" + lock, (owner, name))
        if row is None:
            raise NotFound(f"ledger {name} does not exist")
        return _record(owner, row)

    def list(self, owner: str) -> builtins.list[LedgerRecord]:
        return [_record(owner, r) for r in self.db.all(_SELECT + "WHERE owner = ? ORDER BY name", (owner,))]

    # data --------------------------------------------------------------------

    def write(
        self, owner: str, name: str, mode: WriteMode, data: dict[str, Any] | None = None
    ) -> tuple[LedgerRecord, LedgerChange]:
        """Replace, merge into (top-level keys) or delete the data, against the row as it is
        now (inside the caller's transaction); the replaced data becomes a version."""
        if mode not in MODES:
            raise InvalidInput(f"unknown ledger write mode {mode!r}: use replace, merge or delete")
        if mode != "delete":
            check_data(data, max_bytes=self.max_bytes)  # the patch alone; the result is checked below
        now = now_iso()
        with self.db.transaction() as conn:
            row = conn.execute(_SELECT + "WHERE owner = ? AND name = ?" + for_update(self.db), (owner, name)).fetchone()
            if row is None:
                raise NotFound(f"ledger {name} does not exist")
            current = json.loads(row["data"])
            if mode == "delete":
                new: dict[str, Any] = {}
            elif mode == "merge":
                new = {**current, **(data or {})}
            else:
                new = dict(data or {})
            text = check_data(new, max_bytes=self.max_bytes)
            if row["updated_at"] is not None:  # an empty ledger replaced nothing
                conn.execute(
                    "INSERT INTO ledger_versions (ledger_id, data, updated_at, replaced_at, size_bytes) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (row["id"], row["data"], row["updated_at"], now, len(row["data"].encode("utf-8"))),
                )
                conn.execute(
                    "DELETE FROM ledger_versions WHERE ledger_id = ? AND id NOT IN "
                    "(SELECT id FROM ledger_versions WHERE ledger_id = ? ORDER BY id DESC LIMIT ?)",
                    (row["id"], row["id"], self.versions_kept),
                )
            conn.execute(
                "UPDATE ledgers SET data = ?, updated_at = ? WHERE id = ?",
                (text, None if mode == "delete" else now, row["id"]),
            )
        change = LedgerChange(owner, name, "delete" if mode == "delete" else "set", now, new)
        return self.get(owner, name), change

    def versions(self, owner: str, name: str) -> builtins.list[dict[str, Any]]:
        """The replaced data's versions, newest first, without their data."""
        ledger_id = self._id(owner, name)
        return [
            {"version": r[0], "replaced_at": r[1], "updated_at": r[2], "size_bytes": r[3]}
            for r in self.db.all(
                "SELECT id, replaced_at, updated_at, size_bytes FROM ledger_versions WHERE ledger_id = ? "
                "ORDER BY id DESC",
                (ledger_id,),
            )
        ]

    def version(self, owner: str, name: str, version: int) -> dict[str, Any]:
        row = self.db.one(
            "SELECT id, replaced_at, updated_at, size_bytes, data FROM ledger_versions WHERE ledger_id = ? AND id = ?",
            (self._id(owner, name), version),
        )
        if row is None:
            raise NotFound(f"ledger {name} has no version {version}")
        return {
            "version": row[0],
            "replaced_at": row[1],
            "updated_at": row[2],
            "size_bytes": row[3],
            "data": json.loads(row[4]),
        }

    def _id(self, owner: str, name: str) -> int:
        row = self.db.one("SELECT id FROM ledgers WHERE owner = ? AND name = ?", (owner, name))
        if row is None:
            raise NotFound(f"ledger {name} does not exist")
        return int(row[0])


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise InvalidInput("ledger description must be text")
    if len(description) > DESCRIPTION_MAX_CHARS:
        raise InvalidInput(f"ledger description must be at most {DESCRIPTION_MAX_CHARS} characters")
    return check_text(description, "ledger description")


def _record(owner: str, row: Any) -> LedgerRecord:
    data = row["data"]
    return LedgerRecord(
        owner=owner,
        name=row["name"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        data=json.loads(data),
        size_bytes=len(data.encode("utf-8")),
    )
