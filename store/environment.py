"""Environment variables: an owner's non-secret configuration, shown as plain text.

Names follow the secret-name rule (`secrets.check_name`); names starting with
`LOGIC_` or `PARTICLE_` are reserved (the runtime's and Particle's own
variables). An owner has at most `max_vars` of them and their values total at
most `max_bytes` (UTF-8), checked inside the write's transaction so two
concurrent writes cannot both slip under the limit. Values are never
encrypted and never masked: a secret belongs in the secret store, which this
module never reads.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, cast

from .backend import Backend
from .clock import now_iso
from .errors import InvalidInput, NotFound, TooLarge
from .secrets import check_name

RESERVED_PREFIXES = ("LOGIC_", "PARTICLE_")


@dataclass(frozen=True)
class EnvVar:
    owner: str
    name: str
    value: str
    created_at: str
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "created_at": self.created_at, "updated_at": self.updated_at}


def check_env_name(name: object, *, max_chars: int) -> str:
    """The secret-name rule, then the reserved prefixes; InvalidInput names the problem."""
    try:
        check_name(name, max_chars=max_chars)
    except InvalidInput as exc:
        raise InvalidInput(exc.message.replace("secret name", "environment variable name")) from None
    name = cast(str, name)  # check_name refused anything else
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise InvalidInput(f"environment variable names starting with {prefix} are reserved: {name} is refused")
    return name


def check_env_value(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("environment variable value must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("environment variable value is not valid UTF-8 text") from None
    return value


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


class EnvStore:
    """EnvRepository on SQLite."""

    def __init__(self, db: Backend, *, max_vars: int, max_bytes: int, max_name_chars: int):
        self.db = db
        self.max_vars = max_vars
        self.max_bytes = max_bytes
        self.max_name_chars = max_name_chars

    def check_name(self, name: object) -> str:
        return check_env_name(name, max_chars=self.max_name_chars)

    def set(self, owner: str, name: str, value: object) -> EnvVar:
        """Create or replace one variable; TooLarge / InvalidInput past the owner's limits."""
        self.check_name(name)
        text = check_env_value(value)
        if _size(text) > self.max_bytes:
            raise TooLarge(f"environment variable {name} is {_size(text)} bytes; values total at most {self.max_bytes}")
        now = now_iso()
        with self.db.transaction() as conn:
            # A row lock cannot guard rows that do not exist yet: two new names on two nodes
            # would both pass the count. One writer per owner at a time (first, before the read).
            self.db.lock("env:" + owner)
            rows = conn.execute("SELECT name, value FROM env_vars WHERE owner = ?", (owner,)).fetchall()
            others = [r for r in rows if r[0] != name]
            if len(others) == len(rows) and len(rows) >= self.max_vars:
                raise InvalidInput(
                    f"{owner} has {len(rows)} environment variables, the limit: delete one before adding {name}"
                )
            total = sum(_size(r[1]) for r in others) + _size(text)
            if total > self.max_bytes:
                raise TooLarge(
                    f"environment variable values would total {total} bytes; the limit per owner is {self.max_bytes}"
                )
            conn.execute(
                "INSERT INTO env_vars (owner, name, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (owner, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (owner, name, text, now, now),
            )
        return self.get(owner, name)

    def delete(self, owner: str, name: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM env_vars WHERE owner = ? AND name = ?", (owner, name)).rowcount == 0:
                raise NotFound(f"environment variable {name} does not exist")

    def get(self, owner: str, name: str) -> EnvVar:
        row = self.db.one(
            "SELECT name, value, created_at, updated_at FROM env_vars WHERE owner = ? AND name = ?", (owner, name)
        )
        if row is None:
            raise NotFound(f"environment variable {name} does not exist")
        return EnvVar(owner, row[0], row[1], row[2], row[3])

    def list(self, owner: str) -> builtins.list[EnvVar]:
        return [
            EnvVar(owner, r[0], r[1], r[2], r[3])
            for r in self.db.all(
                "SELECT name, value, created_at, updated_at FROM env_vars WHERE owner = ? ORDER BY name", (owner,)
            )
        ]

    def values(self, owner: str) -> dict[str, str]:
        """Every variable of the owner, name -> value (what a run or a webhook sees)."""
        return {r[0]: r[1] for r in self.db.all("SELECT name, value FROM env_vars WHERE owner = ?", (owner,))}
