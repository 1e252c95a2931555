"""Secret records and the rules that belong to the data itself.

Names match `^[A-Z_][A-Z0-9_]*$` (at most 64 characters) and are unique per
owner. Values are non-empty UTF-8 text, at most 64 KiB, write-only: nothing
here returns a value except `reveal`, which hands a `Sensitive` to the runtime.
A secret that any function or integration declares cannot be deleted.

Versions: an update or a restore moves the value it replaces into
`secret_versions`, re-sealed with its version number in the associated data
(keyring.py), and keeps the newest `versions_kept` of them. A restore copies a
kept version back as a new current version; nobody sees the value on the way.
Bulk import (`import_values`) checks every entry first and writes all of them
or none, in one transaction.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .backend import INTEGRITY_ERRORS, Backend, Tx, for_update
from .clock import now_iso
from .errors import Conflict, DecryptionError, InvalidInput, NotFound, TooLarge
from .keyring import KeyRing
from .sensitive import Sensitive
from .settings import DECLARED_SECRETS_MAX

NAME_PATTERN = re.compile(r"[A-Z_][A-Z0-9_]*")
CONSUMER_KINDS = ("logic_function", "integration")


@dataclass(frozen=True)
class SecretInfo:
    """Everything about a secret a person may see: never its value."""

    owner: str
    name: str
    created_at: str
    updated_at: str
    last_accessed_at: str | None
    logic_functions: list[str] = field(default_factory=list)
    integrations: list[str] = field(default_factory=list)
    version: int = 1  # the current version's number (not in to_json: DESIGN pins that shape)

    @property
    def usage_count(self) -> int:
        return len(self.logic_functions) + len(self.integrations)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_accessed_at": self.last_accessed_at,
            "usage_count": self.usage_count,
            "logic_functions": list(self.logic_functions),
            "integrations": list(self.integrations),
        }


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret's value as a listing shows it: never the value."""

    number: int
    created_at: str  # when it became the current value
    created_by: str | None  # "NAME (via)": who made it current, and from where
    current: bool
    restored_from: int | None = None  # the version a restore copied, if it was one

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.number,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "current": self.current,
            "restored_from": self.restored_from,
        }


@dataclass(frozen=True)
class ImportEntry:
    """One NAME=value of a bulk import, with where it was found ("line 7") for the errors."""

    where: str
    name: str
    value: Sensitive
    # False for a name read after a line the parser could not read: a quote left open
    # there splits a value into lines, and a line of it may look like NAME=... (threat:
    # a piece of a certificate or token repeated in an error). Problems then omit it.
    name_shown: bool = True


@dataclass(frozen=True)
class ImportResult:
    """The names a bulk import created and updated, in the order of the file: never a value."""

    created: list[str]
    updated: list[str]

    def to_json(self) -> dict[str, list[str]]:
        return {"created": list(self.created), "updated": list(self.updated)}


class ImportRefused(InvalidInput):
    """A bulk import that wrote nothing, with every problem found (each names its line)."""

    def __init__(self, problems: list[str]):
        self.issues = list(problems)  # not `problems`: that spelling reads as a refused deploy
        count = len(self.issues)
        head = f"nothing was imported ({count} problem{'s' if count != 1 else ''})"
        super().__init__(head + ":\n  " + "\n  ".join(self.issues))


@dataclass(frozen=True)
class Access:
    """One read of a secret by a run or a webhook, for the audit trail."""

    owner: str
    secret_name: str
    consumer_kind: str
    consumer_id: str
    consumer_name: str
    run_id: str | None
    at: str
    id: int | None = field(default=None, compare=False)  # the audit row's id once stored (the paging key)

    def to_json(self) -> dict[str, str | None]:
        """What the audit listings show of one access (CLI and API alike)."""
        return {
            "secret": self.secret_name,
            "consumer_kind": self.consumer_kind,
            "consumer": self.consumer_name,
            "consumer_id": self.consumer_id,
            "run_id": self.run_id,
            "at": self.at,
        }


def check_name(name: object, *, max_chars: int) -> str:
    """The secret-name rule (syntax and `secret_name_max_chars`); InvalidInput names the problem."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("secret name must not be empty")
    if len(name) > max_chars:
        raise InvalidInput(f"secret name must be at most {max_chars} characters, not {len(name)}")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid secret name {name!r}: use upper-case letters, digits and _, "
            "not starting with a digit (e.g. API_KEY)"
        )
    return name


def name_problem(name: object, *, max_chars: int) -> str | None:
    """What is wrong with a name, without repeating it (an import's "name" may be a piece of
    a value that a broken quote split off), or None."""
    if not isinstance(name, str) or not name:
        return "secret name must not be empty"
    if len(name) > max_chars:
        return f"secret name must be at most {max_chars} characters, not {len(name)}"
    if not NAME_PATTERN.fullmatch(name):
        return "invalid secret name: use upper-case letters, digits and _, not starting with a digit (e.g. API_KEY)"
    return None


def check_declared(names: list[str]) -> list[str]:
    """A manifest's or webhook's list of secret names: in secret-name syntax, each once, at
    most DECLARED_SECRETS_MAX of them (ValueError for pydantic). Their length is a setting:
    the service checks it with `check_name` when it deploys or creates the consumer."""
    if len(names) > DECLARED_SECRETS_MAX:
        raise ValueError(f"{len(names)} secrets are declared; at most {DECLARED_SECRETS_MAX} are allowed")
    for name in names:
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"invalid secret name {name!r}: use upper-case letters, digits and _")
    if len(set(names)) != len(names):
        raise ValueError("a secret is declared twice")
    return names


def check_value(value: object, *, max_bytes: int) -> str:
    """Validate a new value; errors describe the value, never repeat it."""
    if isinstance(value, Sensitive):
        value = value.reveal()
    if isinstance(value, (bytes, bytearray)):
        if len(value) > max_bytes:
            raise TooLarge(f"secret value is {len(value)} bytes; the limit is {max_bytes} bytes")
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("secret value is not valid UTF-8 text") from None
    if not isinstance(value, str):
        raise InvalidInput("secret value must be text")
    if value == "":
        raise InvalidInput("secret value must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("secret value is not valid UTF-8 text") from None
    if size > max_bytes:
        raise TooLarge(f"secret value is {size} bytes; the limit is {max_bytes} bytes")
    return value


_WHERE = re.compile(r"(?:line|entry) (\d+):")


def _position(problem: str) -> int:
    """Where a problem of an import is ("line 7: ..." is 7); 0 for the input as a whole."""
    match = _WHERE.match(problem)
    return int(match.group(1)) if match else 0


# A secret's last access is the newer of the time kept on its row (folded in from the audit
# before the audit is pruned) and its newest audit row since it was created (`audit_from`:
# the newest audit row then, so a re-created name does not inherit the reads of the one
# before): one index seek each, and no row that every run reading the secret updates.
_SELECT_INFO = (
    "SELECT s.id, s.name, s.created_at, s.updated_at, s.last_accessed_at, s.version, "
    "(SELECT max(a.at) FROM secret_access a WHERE a.owner = s.owner AND a.secret_name = s.name "
    "AND a.id > s.audit_from) AS last_read_at FROM secrets s "
)


def _later(a: str | None, b: str | None) -> str | None:
    return max(a, b) if a and b else a or b


class SecretStore:
    """SecretRepository on SQLite: values sealed by the key ring (keyring.py)."""

    def __init__(
        self, db: Backend, ring: KeyRing, *, max_value_bytes: int, max_name_chars: int, versions_kept: int = 10
    ):
        self.db = db
        self.ring = ring
        self.max_value_bytes = max_value_bytes
        self.max_name_chars = max_name_chars
        self.versions_kept = max(0, versions_kept)

    # writes ----------------------------------------------------------------

    def create(self, owner: str, name: str, value: object, *, by: str | None = None) -> SecretInfo:
        check_name(name, max_chars=self.max_name_chars)
        text = check_value(value, max_bytes=self.max_value_bytes)
        now = now_iso()
        try:
            with self.db.transaction() as conn:
                self.ring.refresh()
                conn.execute(
                    "INSERT INTO secrets (owner, name, ciphertext, created_at, updated_at, version, updated_by, "
                    "audit_from) VALUES (?, ?, ?, ?, ?, 1, ?, (SELECT coalesce(max(id), 0) FROM secret_access))",
                    (owner, name, self.ring.seal(text, owner, name), now, now, by),
                )
        except INTEGRITY_ERRORS:
            raise Conflict(f"secret {name} already exists") from None
        return self.info(owner, name)

    def update(self, owner: str, name: str, value: object, *, by: str | None = None) -> SecretInfo:
        """Replace the value; the replaced one is kept as a version (the newest `versions_kept`)."""
        check_name(name, max_chars=self.max_name_chars)
        text = check_value(value, max_bytes=self.max_value_bytes)
        with self.db.transaction():
            self.ring.refresh()
            self._replace(self._current(owner, name), text, by=by)
        return self.info(owner, name)

    def restore(self, owner: str, name: str, version: object, *, by: str | None = None) -> SecretInfo:
        """Make kept version `version` current again, as a new version; last accessed and usages
        stay as they are. The value goes from one ciphertext to the other, never out."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput(f"version must be a whole number from 1, not {version!r}")
        with self.db.transaction() as conn:
            self.ring.refresh()
            current = self._current(owner, name)
            if version == current["version"]:
                raise Conflict(f"version {version} is already the current value of secret {name}: nothing to restore")
            if version > current["version"]:  # before SQL: a number past 2**63 is no SQLite integer
                raise NotFound(self._no_version(conn, current, version))
            row = conn.execute(
                "SELECT CAST(ciphertext AS BLOB) FROM secret_versions WHERE secret_id = ? AND version = ?",
                (current["id"], version),
            ).fetchone()
            if row is None:
                raise NotFound(self._no_version(conn, current, version))
            value = self.ring.unseal(row[0], owner, name, version=version)
            self._replace(current, value.reveal(), by=by, restored_from=version)
        return self.info(owner, name)

    def _current(self, owner: str, name: str) -> Any:
        row = self.db.one(
            "SELECT id, owner, name, version, CAST(ciphertext AS BLOB) AS ciphertext, updated_at, updated_by, "
            "restored_from FROM secrets WHERE owner = ? AND name = ?" + for_update(self.db),
            (owner, name),
        )  # locked: two updates of one secret (on two nodes) go one after the other
        if row is None:
            raise NotFound(f"secret {name} does not exist")
        return row

    def _no_version(self, conn: Tx, current: Any, version: int) -> str:
        kept = [
            r[0]
            for r in conn.execute(
                "SELECT version FROM secret_versions WHERE secret_id = ? ORDER BY version", (current["id"],)
            )
        ]
        name = current["name"]
        if version > current["version"]:
            why = f"secret {name} has no version {version} (the current one is {current['version']})"
        else:
            why = f"version {version} of secret {name} is no longer kept (the last {self.versions_kept} are)"
        listed = ", ".join(map(str, kept)) if kept else "none"
        return f"{why}; versions that can be restored: {listed}"

    def _replace(self, current: Any, text: str, *, by: str | None, restored_from: int | None = None) -> None:
        """The current value becomes kept version N (sealed to N), `text` becomes N + 1.
        Inside the caller's transaction, with the ring refreshed."""
        owner, name = current["owner"], current["name"]
        number = current["version"]
        with self.db.transaction() as conn:
            if self.versions_kept:
                try:
                    old = self.ring.unseal(current["ciphertext"], owner, name)
                except DecryptionError:
                    # Threat: a corrupted current value must not block setting a new one; what
                    # cannot be decrypted cannot be restored either, so it is not kept.
                    old = None
                if old is not None:
                    conn.execute(
                        "INSERT INTO secret_versions (secret_id, version, ciphertext, created_at, created_by, "
                        "restored_from) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            current["id"],
                            number,
                            self.ring.seal(old.reveal(), owner, name, version=number),
                            current["updated_at"],
                            current["updated_by"],
                            current["restored_from"],
                        ),
                    )
            conn.execute(
                "UPDATE secrets SET ciphertext = ?, version = ?, updated_at = ?, updated_by = ?, restored_from = ? "
                "WHERE id = ?",
                (self.ring.seal(text, owner, name), number + 1, now_iso(), by, restored_from, current["id"]),
            )
            # Only the newest `versions_kept` replaced values stay (none with 0).
            conn.execute(
                "DELETE FROM secret_versions WHERE secret_id = ? AND version NOT IN "
                "(SELECT version FROM secret_versions WHERE secret_id = ? ORDER BY version DESC LIMIT ?)",
                (current["id"], current["id"], self.versions_kept),
            )

    def import_values(
        self,
        owner: str,
        entries: Iterable[ImportEntry],
        *,
        update: bool = False,
        by: str | None = None,
        problems: Iterable[str] = (),
    ) -> ImportResult:
        """Check every entry (name, value, duplicates, existing names unless `update`), then
        write all of them in one transaction, or none: ImportRefused lists every problem,
        `problems` (the parser's) first. Messages name lines and names, never a value."""
        entries = builtins.list(entries)
        found = builtins.list(problems)
        with self.db.transaction():
            self.ring.refresh()
            existing = set(self.names(owner))
            first_seen: dict[str, str] = {}
            texts: builtins.list[tuple[ImportEntry, str]] = []
            for entry in entries:
                problem = name_problem(entry.name, max_chars=self.max_name_chars)
                if problem is not None:
                    found.append(f"{entry.where}: {problem}")
                    continue
                shown = entry.name if entry.name_shown else None
                try:
                    text = check_value(entry.value, max_bytes=self.max_value_bytes)
                except (InvalidInput, TooLarge) as exc:  # their messages describe the value, never repeat it
                    found.append(f"{entry.where}: {shown}: {exc.message}" if shown else f"{entry.where}: {exc.message}")
                    continue
                if entry.name in first_seen:
                    found.append(
                        f"{entry.where}: {shown or 'its name'} is given twice (first at {first_seen[entry.name]})"
                    )
                    continue
                first_seen[entry.name] = entry.where
                if entry.name in existing and not update:
                    found.append(
                        f"{entry.where}: secret {shown or 'of that name'} already exists "
                        "(import with --update to replace it)"
                    )
                    continue
                texts.append((entry, text))
            if not found and not texts:
                found.append("nothing to import: no NAME=value entries were found")
            if found:
                raise ImportRefused(sorted(found, key=_position))  # in the file's order
            created, updated = [], []
            for entry, text in texts:
                if entry.name in existing:
                    self._replace(self._current(owner, entry.name), text, by=by)
                    updated.append(entry.name)
                else:
                    self.create(owner, entry.name, text, by=by)
                    created.append(entry.name)
        return ImportResult(created=created, updated=updated)

    def delete(self, owner: str, name: str) -> None:
        with self.db.transaction() as conn:
            self._current(owner, name)  # locked: a deploy declaring it now waits, then finds it gone
            info = self.info(owner, name)
            if info.usage_count:
                users = [f"function {n}" for n in info.logic_functions]
                users += [f"integration {n}" for n in info.integrations]
                raise Conflict(f"secret {name} is in use by {', '.join(users)}: remove it from them first")
            try:
                conn.execute("DELETE FROM secrets WHERE owner = ? AND name = ?", (owner, name))
            except INTEGRITY_ERRORS:
                raise Conflict(f"secret {name} was declared by a function or integration meanwhile") from None

    # reads -----------------------------------------------------------------

    def exists(self, owner: str, name: str) -> bool:
        return self.db.one("SELECT 1 FROM secrets WHERE owner = ? AND name = ?", (owner, name)) is not None

    def names(self, owner: str) -> list[str]:
        return [r[0] for r in self.db.all("SELECT name FROM secrets WHERE owner = ? ORDER BY name", (owner,))]

    def info(self, owner: str, name: str) -> SecretInfo:
        row = self.db.one(
            _SELECT_INFO + "WHERE s.owner = ? AND s.name = ?",
            (owner, name),
        )
        if row is None:
            raise NotFound(f"secret {name} does not exist")
        return self._info(owner, row)

    def list(self, owner: str) -> list[SecretInfo]:
        rows = self.db.all(
            _SELECT_INFO + "WHERE s.owner = ? ORDER BY s.name",
            (owner,),
        )
        return [self._info(owner, row) for row in rows]

    def _info(self, owner: str, row: Any) -> SecretInfo:
        users = self.db.all(
            "SELECT consumer_kind, consumer_name FROM secret_usages WHERE secret_id = ? ORDER BY consumer_name",
            (row["id"],),
        )
        return SecretInfo(
            owner=owner,
            name=row["name"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_accessed_at=_later(row["last_accessed_at"], row["last_read_at"]),
            logic_functions=[u[1] for u in users if u[0] == "logic_function"],
            integrations=[u[1] for u in users if u[0] == "integration"],
            version=row["version"],
        )

    def versions(self, owner: str, name: str) -> builtins.list[SecretVersion]:
        """The current version, then the kept ones, newest first: numbers, times, who. No values."""
        with self.db.transaction():  # one snapshot: an update in between must not show a version twice
            current = self._current(owner, name)
            kept = self.db.all(
                "SELECT version, created_at, created_by, restored_from FROM secret_versions "
                "WHERE secret_id = ? ORDER BY version DESC",
                (current["id"],),
            )
        listing = [
            SecretVersion(
                current["version"], current["updated_at"], current["updated_by"], True, current["restored_from"]
            )
        ]
        listing += [
            SecretVersion(r["version"], r["created_at"], r["created_by"], False, r["restored_from"]) for r in kept
        ]
        return listing

    # the runtime's side ------------------------------------------------------

    def reveal(self, owner: str, name: str) -> Sensitive:
        """The current value, wrapped. For the runtime only; never for an interface."""
        # CAST: a row edited into TEXT must fail as a DecryptionError naming the secret,
        # not as a UTF-8 decoding error from the driver.
        row = self.db.one("SELECT CAST(ciphertext AS BLOB) FROM secrets WHERE owner = ? AND name = ?", (owner, name))
        if row is None:
            raise NotFound(f"secret {name} does not exist")
        return self.ring.unseal(row[0], owner, name)

    def every_value(self, owner: str, names: Iterable[str]) -> builtins.list[Sensitive]:
        """The current value and every kept version of each named secret that exists (one
        that no longer decrypts is skipped). For the runtime to mask with, never for an
        interface: a replayed run's input may hold a value its first run masked."""
        found: builtins.list[Sensitive] = []
        for name in dict.fromkeys(names):
            row = self.db.one(
                "SELECT id, CAST(ciphertext AS BLOB) FROM secrets WHERE owner = ? AND name = ?", (owner, name)
            )
            if row is None:
                continue
            sealed = [(None, row[1])] + [
                (r[0], r[1])
                for r in self.db.all(
                    "SELECT version, CAST(ciphertext AS BLOB) FROM secret_versions WHERE secret_id = ?", (row[0],)
                )
            ]
            for version, blob in sealed:
                try:
                    found.append(self.ring.unseal(blob, owner, name, version=version))
                except DecryptionError:
                    continue
        return found

    def set_usages(
        self, owner: str, consumer_kind: str, consumer_id: str, consumer_name: str, names: Iterable[str]
    ) -> None:
        """Replace what one consumer declares (inside the caller's transaction)."""
        if consumer_kind not in CONSUMER_KINDS:  # not an assert: those vanish under -O
            raise InvalidInput(f"unknown consumer kind {consumer_kind!r}")
        names = list(dict.fromkeys(names))
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM secret_usages WHERE consumer_kind = ? AND consumer_id = ?", (consumer_kind, consumer_id)
            )
            for name in names:
                row = conn.execute(  # a delete under way commits first: then it is gone
                    "SELECT id FROM secrets WHERE owner = ? AND name = ?" + for_update(self.db, share=True),
                    (owner, name),
                ).fetchone()
                if row is None:
                    raise InvalidInput(f"secret {name} does not exist for {owner}")
                conn.execute(
                    "INSERT INTO secret_usages (secret_id, consumer_kind, consumer_id, consumer_name) "
                    "VALUES (?, ?, ?, ?)",
                    (row[0], consumer_kind, consumer_id, consumer_name),
                )

    def record_access(self, accesses: Iterable[Access]) -> None:
        """Note last-accessed times and audit rows (inside the caller's transaction)."""
        accesses = list(accesses)
        if not accesses:
            return
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO secret_access (owner, secret_name, consumer_kind, consumer_id, "
                "consumer_name, run_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (a.owner, a.secret_name, a.consumer_kind, a.consumer_id, a.consumer_name, a.run_id, a.at)
                    for a in accesses
                ],
            )
            # No last-accessed time is written here: it is read from these rows (_SELECT_INFO),
            # so runs on many nodes reading one secret do not all update its row.

    def audit(
        self, owner: str, name: str | None = None, *, limit: int = 1000, before: tuple[str, int] | None = None
    ) -> builtins.list[Access]:
        """Newest first; with `before` (at, id) of an access, the ones after it (the next page)."""
        sql = "SELECT * FROM secret_access WHERE owner = ?"
        params: builtins.list[str | int] = [owner]
        if name is not None:
            sql += " AND secret_name = ?"
            params.append(name)
        if before is not None:
            sql += " AND (at, id) < (?, ?)"
            params += list(before)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [
            Access(
                owner=r["owner"],
                secret_name=r["secret_name"],
                consumer_kind=r["consumer_kind"],
                consumer_id=r["consumer_id"],
                consumer_name=r["consumer_name"],
                run_id=r["run_id"],
                at=r["at"],
                id=r["id"],
            )
            for r in self.db.all(sql, params)
        ]

    def prune_audit(self, before: str, limit: int = 10_000) -> int:
        """Forget access records older than `before` (last-accessed times stay: folded into
        the secrets' rows first). One node at a time (the others find the lock taken)."""
        with self.db.transaction() as conn:
            if not self.db.try_lock("housekeeping"):
                return 0
            newest_gone = (
                "SELECT max(a.at) FROM secret_access a WHERE a.owner = secrets.owner "
                "AND a.secret_name = secrets.name AND a.id > secrets.audit_from AND a.at < ?"
            )
            conn.execute(
                f"UPDATE secrets SET last_accessed_at = ({newest_gone}) WHERE ({newest_gone}) IS NOT NULL "
                f"AND (last_accessed_at IS NULL OR last_accessed_at < ({newest_gone}))",
                (before, before, before),
            )
            return int(
                conn.execute(
                    "DELETE FROM secret_access WHERE id IN (SELECT id FROM secret_access WHERE at < ? LIMIT ?)",
                    (before, limit),
                ).rowcount
            )

    # rotation ----------------------------------------------------------------

    def reencrypt_all(self, key_id: int) -> int:
        """Re-seal every value, and every kept version, under `key_id` (inside the caller's
        transaction); returns how many secrets (not versions) it re-sealed."""
        count = 0
        with self.db.transaction() as conn:
            for row in conn.execute(
                "SELECT id, owner, name, CAST(ciphertext AS BLOB) AS ciphertext FROM secrets"
            ).fetchall():
                value = self.ring.unseal(row["ciphertext"], row["owner"], row["name"])
                conn.execute(
                    "UPDATE secrets SET ciphertext = ? WHERE id = ?",
                    (self.ring.seal(value.reveal(), row["owner"], row["name"], key_id=key_id), row["id"]),
                )
                count += 1
            # Threat: a kept version left under the old data key would be lost when that key
            # is dropped below, or readable by whoever still holds the old key.
            for row in conn.execute(
                "SELECT v.id, v.version, s.owner, s.name, CAST(v.ciphertext AS BLOB) AS ciphertext "
                "FROM secret_versions v JOIN secrets s ON s.id = v.secret_id"
            ).fetchall():
                owner, name, number = row["owner"], row["name"], row["version"]
                value = self.ring.unseal(row["ciphertext"], owner, name, version=number)
                conn.execute(
                    "UPDATE secret_versions SET ciphertext = ? WHERE id = ?",
                    (self.ring.seal(value.reveal(), owner, name, key_id=key_id, version=number), row["id"]),
                )
        return count
