"""The data home: open or initialise the database and key ring; rotate keys.

`Store` owns every repository and the transaction that spans them: the
runtime composes a unit of work (a run's record, its secret accesses, the
events it published, the delivery's completion) with `store.transaction()`
and never reaches the database itself. The repositories' contracts are the
Protocols in `repositories.py`; the classes built here are their SQLite
implementations.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import masterkey
from .backend import Backend, node_id, open_backend
from .changes import ChangeStore
from .clock import now_iso
from .database import space_on_disk
from .environment import EnvStore
from .errors import MasterKeyError, NotFound
from .events import event_store
from .functions import FunctionStore
from .identity import Identity, User
from .integrations import IntegrationStore
from .keyring import KeyRing
from .ledgers import LedgerStore
from .repositories import (
    EnvRepository,
    EventQueue,
    FunctionRepository,
    IdentityRepository,
    IntegrationRepository,
    LedgerRepository,
    SecretRepository,
    SessionRepository,
    TriggerRepository,
)
from .secrets import SecretStore
from .sessions import SessionStore
from .settings import Settings
from .triggers import TriggerStore


@dataclass
class InitResult:
    created: bool
    admin: User
    token: str | None = field(repr=False)  # shown once, only when this call created the admin
    key_source: str


class Store:
    """Every repository of one data home, built from its settings, and `transaction()`."""

    def __init__(self, settings: Settings, db: Backend, ring: KeyRing, key_source: str):
        self.settings = settings
        self.db = db
        self.ring = ring
        self.key_source = key_source
        secrets = SecretStore(
            db,
            ring,
            max_value_bytes=settings.secret_value_max_bytes,
            max_name_chars=settings.secret_name_max_chars,
            versions_kept=settings.secret_versions_kept,
        )
        self.identity: IdentityRepository = Identity(db)
        self.secrets: SecretRepository = secrets
        self.functions: FunctionRepository = FunctionStore(db, secrets, runs_kept=settings.runs_kept)
        self.triggers: TriggerRepository = TriggerStore(db)
        self.events: EventQueue = event_store(
            db,
            max_pending=settings.queue_max_pending,
            max_pending_per_owner=settings.queue_max_pending_per_owner,
            max_attempts=settings.delivery_max_attempts,
            node=node_id(settings),
        )
        self.integrations: IntegrationRepository = IntegrationStore(
            db, secrets, logs_kept=settings.integration_logs_kept
        )
        self.environment: EnvRepository = EnvStore(
            db,
            max_vars=settings.env_vars_max,
            max_bytes=settings.env_bytes_max,
            max_name_chars=settings.secret_name_max_chars,
        )
        self.ledgers: LedgerRepository = LedgerStore(
            db, max_bytes=settings.ledger_max_bytes, versions_kept=settings.ledger_versions_kept
        )
        self.sessions: SessionRepository = SessionStore(db, idle_s=settings.console_session_idle_s)
        self.changes = ChangeStore(db, ring)  # the change audit (changes.py)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One unit of work across repositories: all of it commits or none does. Nested
        calls (a repository's own writes) join the outer one. DiskFull or StoreBusy when
        the machine refuses (see database.py); nothing is half-written."""
        with self.db.transaction():
            yield

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the current transaction commits (Database.after_commit)."""
        self.db.after_commit(callback)

    @classmethod
    def open(cls, settings: Settings) -> Store:
        db = open_backend(settings)
        try:
            db.check_schema()
            ring, source = KeyRing.open(db, lambda: _candidates(settings))
        except BaseException:
            db.close()
            raise
        source = _finish_master_rotation(settings, source)
        return cls(settings, db, ring, source)

    @staticmethod
    def migrate(settings: Settings) -> tuple[int, int]:
        """`logic db migrate`: bring an existing database's schema up to date, without the
        master key (migrations never read a value); (version before, version after)."""
        if settings.database_url is None and not settings.db_path.exists():
            raise NotFound(f"no database at {settings.db_path}: run `logic init` first")
        db = open_backend(settings, create=True)
        try:
            before = db.schema_version
            return before, db.migrate()
        finally:
            db.close()

    @classmethod
    def initialize(cls, settings: Settings) -> tuple[Store, InitResult]:
        """Create the data home if needed; safe to run again (then it changes nothing).

        The key ring and the admin are written in one transaction, and a run that
        finds a database without them (an earlier `init` stopped half-way) finishes
        the job instead of failing with "no admin user".
        """
        home = settings.home
        if not home.exists():
            with space_on_disk(home):
                home.mkdir(parents=True, mode=0o700, exist_ok=True)  # another `init` may be making it too
            os.chmod(home, 0o700)  # mkdir's mode is filtered by the umask
        if _database_exists(settings):
            store = cls.open(settings)
        else:
            if not _env_key(settings) and not settings.key_path.exists():
                with space_on_disk(home):  # another init's key, written first, is kept (and used)
                    masterkey.write_key_file(settings.key_path, masterkey.generate(), replace=False)
            candidates = _candidates(settings)
            db = open_backend(settings, create=True)
            try:
                db.migrate()
                source, key = candidates[0]
                ring = KeyRing(db, key, lambda: _candidates(settings))
            except BaseException:
                db.close()
                raise
            store = cls(settings, db, ring, source)
        try:
            with store.transaction():
                # Two nodes initializing one empty database: the second waits here, then finds
                # the first's key (its ring was read before that commit) and admin.
                store.db.lock("init")
                store.ring.refresh()
                if not store.ring.key_ids:
                    store.ring.add_key()
                admin = store.identity.first_admin_or_none()
                if admin is not None:
                    return store, InitResult(False, admin, None, store.key_source)
                admin = store.identity.create_user(_admin_name(), is_admin=True)
                token = store.identity.create_token(admin, "created by logic init")
                # The change audit's first row (and its key, made with the ring).
                store.changes.record(
                    at=now_iso(),
                    actor=admin.name,
                    via="cli",
                    owner=None,
                    action="init",
                    target_kind="user",
                    target=admin.name,
                    details={"admin": True},
                )
        except BaseException:
            store.close()
            raise
        return store, InitResult(True, admin, token, store.key_source)

    def close(self) -> None:
        self.db.close()

    def fault(self) -> str | None:
        """Why writes to the store fail now ("disk full", "database locked", ...), or None."""
        return self.db.fault()

    # key rotation ------------------------------------------------------------

    def rotate_data_key(self, record_change: Callable[[int, int], None] | None = None) -> tuple[int, int]:
        """New data key; every value and kept version re-encrypted under it; old keys dropped.
        One transaction. Returns the new key's id and how many secrets were re-encrypted."""
        try:
            with self.transaction():
                self.db.lock("keyring")  # no value is sealed meanwhile (KeyRing.refresh)
                key_id = self.ring.add_key()
                count = self.secrets.reencrypt_all(key_id)
                self.functions.reencrypt_run_inputs(key_id)  # runs' sealed inputs (replay) too
                self.ring.drop_keys_except(key_id)
                if record_change is not None:  # the change audit's row, in the same transaction
                    record_change(key_id, count)
        except BaseException:
            self.ring.reload()  # forget the in-memory key of the rolled-back transaction
            raise
        return key_id, count

    def rotate_master_key(self, record_change: Callable[[], None] | None = None) -> str:
        """Re-wrap the ring under a fresh master key (or LOGIC_MASTER_KEY_NEXT when set);
        returns where the new key now lives. `record_change` writes the change audit's row
        in the re-wrap's transaction."""
        next_key = _next_key(self.settings)
        if next_key is not None:
            return self._rotate_to_next(masterkey.decode(next_key, source=masterkey.NEXT), record_change)
        new_key = masterkey.generate()
        pending = masterkey.pending_path(self.settings.key_path)
        if self.key_source == str(pending):
            # Threat: overwriting the only file that opens the ring (LOGIC_MASTER_KEY
            # still holds the old key) would lose every secret if we crashed before step 2.
            raise MasterKeyError(
                f"the ring is still wrapped by the key in {pending}: put it into LOGIC_MASTER_KEY "
                "and delete the file before rotating again"
            )
        with space_on_disk(self.settings.home):
            masterkey.write_key_file(pending, new_key)  # 1. new key durable before the ring needs it
        try:
            with self.transaction():  # 2. one transaction
                self.db.lock("keyring")
                if record_change is not None:
                    record_change()  # first: nothing after the re-wrap may fail but the commit
                self.ring.rewrap(new_key)
        except BaseException:
            pending.unlink(missing_ok=True)  # the ring is still under the old key
            self.ring.reload()  # and so is this process's ring, if the commit failed after the re-wrap
            raise
        if _env_key(self.settings):
            self.key_source = str(pending)
            return str(pending)  # the operator moves it into LOGIC_MASTER_KEY
        os.replace(pending, self.settings.key_path)  # 3. the new key takes the usual place
        self.key_source = str(self.settings.key_path)
        return self.key_source

    def _rotate_to_next(self, new_key: bytes, record_change: Callable[[], None] | None) -> str:
        """Re-wrap under the key every node was given beforehand beside the one in use, so
        no node stops or restarts into a key that no longer opens the ring (many nodes)."""
        try:
            with self.transaction():
                self.db.lock("keyring")
                if self.ring.opens(new_key):  # another node (or an earlier run) got there first
                    raise MasterKeyError(
                        "the key ring is wrapped by LOGIC_MASTER_KEY_NEXT already: on every node, make it "
                        "LOGIC_MASTER_KEY and unset LOGIC_MASTER_KEY_NEXT"
                    )
                if record_change is not None:
                    record_change()
                self.ring.rewrap(new_key)
        except BaseException:
            self.ring.reload()  # the ring is still under the old key, in memory too
            raise
        self.key_source = masterkey.NEXT
        return masterkey.NEXT


def _database_exists(settings: Settings) -> bool:
    """SQLite: the file is there. PostgreSQL: the database holds our schema."""
    if settings.database_url is None:
        return settings.db_path.exists()
    db = open_backend(settings, create=True)
    try:
        return db.schema_version > 0
    finally:
        db.close()


def _env_key(settings: Settings) -> str | None:
    return settings.master_key.get_secret_value() if settings.master_key else None


def _next_key(settings: Settings) -> str | None:
    return settings.master_key_next.get_secret_value() if settings.master_key_next else None


def _candidates(settings: Settings) -> list[tuple[str, bytes]]:
    return masterkey.candidates(_env_key(settings), settings.key_path, _next_key(settings))


def _finish_master_rotation(settings: Settings, source: str) -> str:
    """Complete a master-key rotation that a crash interrupted (see masterkey.py).

    Returns where the key that opened the ring lives now.
    """
    pending = masterkey.pending_path(settings.key_path)
    if _env_key(settings):
        return source  # the operator owns where the key lives
    if source == str(pending):
        os.replace(pending, settings.key_path)
        return str(settings.key_path)
    if pending.exists():
        pending.unlink()  # written, but the ring was never re-wrapped under it
    return source


def _admin_name() -> str:
    try:
        name = re.sub(r"[^a-z0-9_-]", "", getpass.getuser().lower())[:39]
    except Exception:
        name = ""
    return name if name and name[0].isalnum() else "admin"


__all__ = ["Store", "InitResult", "MasterKeyError"]
