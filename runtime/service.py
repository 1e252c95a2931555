"""The one service layer: the CLI, the HTTP API and the console all call this.

Every method takes the acting user and, where it applies, an organization;
it resolves the owner, checks membership, and calls the store. Interfaces
never write SQL and never re-implement a rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import paging, secrets_import
from runtime.events.bus import EventBus
from runtime.events.rules import check_event, event_name_problem
from runtime.events.stream_feed import StreamFeed
from runtime.events.streams import Streams
from runtime.execution.owner_gate import OwnerGate
from runtime.execution.redactor import masking_cost, set_cache_bytes
from runtime.execution.trigger_input import TriggerInput
from runtime.integrations.runner import IntegrationRunner
from runtime.manifest import FunctionFiles, load_files, trigger_rows
from store import InitResult, Store
from store.backend import check_text
from store.changes import Change, Verification
from store.clock import iso, now_iso, utcnow
from store.environment import EnvVar
from store.errors import Conflict, DeployError, InvalidInput, NotFound, PermissionDenied
from store.functions import FunctionRecord, TriggerRow
from store.identity import User, org_owner, owner_label
from store.integrations import IntegrationRecord
from store.ledgers import LedgerRecord, WriteMode
from store.secrets import Access, ImportResult, SecretInfo, SecretVersion, check_name
from store.sessions import Session
from store.settings import Settings

if TYPE_CHECKING:
    from runtime.events.dispatcher import Dispatcher
    from runtime.events.scheduler import Scheduler
    from runtime.execution.engine import Engine
    from runtime.workers.pool import Pool


def changed_by(actor: User) -> str:
    """Who made a secret's version, and from where, as its listing shows it: "alice (cli)"."""
    return f"{actor.name} ({actor.via})"


class Service:
    """The one service layer, and the composition root of one process's runtime parts."""

    def __init__(self, store: Store, *, pool: Pool | None = None, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.settings: Settings = store.settings
        self.clock = clock
        settings = self.settings
        set_cache_bytes(settings.redactor_cache_mb * 1024 * 1024)
        self.integration_runner = IntegrationRunner(store.secrets, settings, env=store.environment)
        # This process's live streams (the API's server-sent events and the CLI's tails).
        self.streams = Streams(per_owner=settings.streams_per_owner, buffer_items=settings.stream_buffer_events)
        self.streams.feed = StreamFeed(store, self.streams)  # what other processes commit, and to them
        self.bus = EventBus(store, self.streams)
        self.pool = pool
        self._engine: Engine | None = None
        self._requested_runs = OwnerGate(settings.owner_runs_max)

    @classmethod
    def initialize(cls, settings: Settings) -> InitResult:
        """`logic init`: create the data home, key, database and admin (safe to repeat)."""
        store, result = Store.initialize(settings)
        store.close()
        return result

    @staticmethod
    def migrate_database(settings: Settings) -> tuple[int, int]:
        """`logic db migrate`: the schema brought up to date; (version before, after)."""
        return Store.migrate(settings)

    @classmethod
    def open(cls, settings: Settings, *, runtime: bool = False, clock: Callable[[], datetime] = utcnow) -> Service:
        """Open the store; with `runtime`, start the worker zygote first, before any key or handle exists."""
        pool = None
        if runtime:
            from runtime.workers.pool import WorkerPool

            pool = WorkerPool(settings)
        try:
            store = Store.open(settings)
        except BaseException:
            if pool is not None:
                pool.close()
            raise
        return cls(store, pool=pool, clock=clock)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if self.pool is None:
                raise RuntimeError("this service was opened without the runtime (Service.open(runtime=True))")
            from runtime.execution.engine import Engine

            self._engine = Engine(
                self.store,
                self.pool,
                event_sink=self.bus.publish_from_run,
                ledger_sink=self.bus.ledger_changes_from_run,
                streams=self.streams,
                clock=self.clock,
            )
        return self._engine

    def dispatcher(self, *, threads: int | None = None, poll_s: float | None = None, alone: bool = False) -> Dispatcher:
        """Delivery threads over this service's store, engine, webhooks and bus (not started);
        `alone`: this process serves no API (Dispatcher's docstring says what changes)."""
        from runtime.events.dispatcher import Dispatcher

        settings = self.settings
        return Dispatcher(
            self.store,
            self.engine,
            self.integration_runner,
            self.bus,
            clock=self.clock,
            threads=settings.delivery_threads if threads is None else threads,
            poll_s=settings.dispatcher_poll_s if poll_s is None else poll_s,
            alone=alone,
        )

    def scheduler(self, *, clock: Callable[[], datetime] | None = None) -> Scheduler:
        """The cron scheduler over this service's store, ringing the bus's doorbell (not started)."""
        from runtime.events.scheduler import Scheduler

        return Scheduler(self.store, clock=clock or self.clock, wake=self.bus.wake, housekeeping=self.prune_history)

    def close(self) -> None:
        if self.streams.feed is not None:
            self.streams.feed.close()
        self.integration_runner.close()
        if self.pool is not None:
            self.pool.close()
        self.store.close()

    # who acts, on whose behalf ---------------------------------------------------

    def actor(self, name: str | None = None) -> User:
        """The user a local command acts as: `name`, else the admin made by `logic init`."""
        identity = self.store.identity
        return identity.user(name) if name else identity.first_admin()

    def authenticate(self, token: str | None) -> User:
        return self.store.identity.authenticate(token)

    # console sessions (the cookie holds the id; the store keeps its hash) ---------

    def sign_in(self, token: str) -> tuple[str, Session]:
        """A console session for the holder of an API token: (session id for the cookie, session)."""
        token_id, user = self.store.identity.token_holder(token)
        return self.store.sessions.create(token_id, user, self.clock())

    def session(self, session_id: str | None) -> Session:
        """The signed-in session; Unauthorized when unknown, idle too long, or its token revoked."""
        return self.store.sessions.get(session_id, self.clock())

    def sign_out(self, session_id: str) -> None:
        self.store.sessions.delete(session_id)

    def list_orgs(self, actor: User) -> list[str]:
        """The organizations `actor` belongs to (the console's owner switcher)."""
        return self.store.identity.orgs_of(actor)

    def owner_for(self, actor: User, org: str | None = None) -> str:
        if org is None:
            return actor.owner
        return self.store.identity.require_member(org, actor)

    # the change audit (store/changes.py) -------------------------------------------

    def _changed(
        self, actor: User, action: str, target_kind: str, target: str, owner: str | None, **details: Any
    ) -> None:
        """Record a change: call inside the store transaction that makes it, so both commit
        or neither does. `details` are names, ids and numbers only, never a value."""
        self.store.changes.record(
            at=iso(self.clock()),
            actor=actor.name,
            via=actor.via,
            owner=owner,
            action=action,
            target_kind=target_kind,
            target=target,
            details=details,
        )

    def list_changes(
        self,
        actor: User,
        org: str | None = None,
        *,
        secret: str | None = None,
        function: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> list[Change]:
        """The owner's changes, newest first (an admin's sandbox listing adds the machine-wide
        ones: users, keys); `secret`/`function` keep one target's rows."""
        owner = self.owner_for(actor, org)
        if secret is not None and function is not None:
            raise InvalidInput("filter by a secret or by a function, not both")
        kind, target = ("secret", secret) if secret is not None else ("function", function)
        before_id = _row_id(paging.decode(cursor, int)[0]) if cursor else None
        return self.store.changes.list(
            owner,
            machine_wide=org is None and actor.is_admin,
            target_kind=kind if target is not None else None,
            target=target,
            limit=limit,
            before_id=before_id,
        )

    def verify_changes(self, actor: User, head: str | None = None) -> Verification:
        """Check the whole change audit chain (every owner's rows: admins only). `head`
        ("ID:MAC", printed by an earlier verify) must still be in it."""
        if not actor.is_admin:
            raise PermissionDenied("only an admin can verify the change audit")
        anchor = None
        if head is not None:
            row_id, _, mac = head.partition(":")
            if (
                not (row_id.isascii() and row_id.isdigit())
                or len(mac) != 64
                or not all(c in "0123456789abcdefABCDEF" for c in mac)
            ):
                raise InvalidInput("head: use ID:MAC as `logic audit verify` printed it")
            anchor = (int(row_id), mac)
        return self.store.changes.verify(anchor)

    # secrets -----------------------------------------------------------------

    def check_secret_name(self, name: str) -> str:
        """The secret-name rule alone (the CLI checks it before asking for a value)."""
        return check_name(name, max_chars=self.settings.secret_name_max_chars)

    def create_secret(self, actor: User, name: str, value: object, org: str | None = None) -> SecretInfo:
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            info = self.store.secrets.create(owner, name, value, by=changed_by(actor))
            self._changed(actor, "secret.create", "secret", name, owner, version=info.version)
        return info

    def update_secret(self, actor: User, name: str, value: object, org: str | None = None) -> SecretInfo:
        """Replace the value; the replaced one is kept as a version (`secret_versions_kept`)."""
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            info = self.store.secrets.update(owner, name, value, by=changed_by(actor))
            self._changed(actor, "secret.update", "secret", name, owner, version=info.version)
        return info

    # secret versions and bulk import (issue 13) ----------------------------------

    def secret_versions(self, actor: User, name: str, org: str | None = None) -> list[SecretVersion]:
        """The current version and the kept ones, newest first: number, time, who; never a value."""
        return self.store.secrets.versions(self.owner_for(actor, org), name)

    def restore_secret(self, actor: User, name: str, version: int, org: str | None = None) -> SecretInfo:
        """Make a kept version current again, as a new version (the next run reads it)."""
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            info = self.store.secrets.restore(owner, name, version, by=changed_by(actor))
            self._changed(actor, "secret.restore", "secret", name, owner, restored=version, version=info.version)
        return info

    def import_secrets(
        self,
        actor: User,
        content: bytes | str,
        *,
        format: str = "auto",
        update: bool = False,
        org: str | None = None,
    ) -> ImportResult:
        """A `.env` or JSON import: every entry checked first, then all written in one
        transaction or none (ImportRefused lists every problem by line, never a value)."""
        owner = self.owner_for(actor, org)
        parsed = secrets_import.parse(
            content,
            format=format,
            max_bytes=self.settings.secret_import_max_bytes,
            max_count=self.settings.secret_import_max_count,
        )
        with self.store.transaction():
            result = self.store.secrets.import_values(
                owner, parsed.entries, update=update, by=changed_by(actor), problems=parsed.problems
            )
            # One row per secret, so `audit --changes --secret NAME` finds its import.
            for name in result.created:
                self._changed(actor, "secret.create", "secret", name, owner, imported=True)
            for name in result.updated:
                self._changed(actor, "secret.update", "secret", name, owner, imported=True)
        return result

    def delete_secret(self, actor: User, name: str, org: str | None = None) -> None:
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            self.store.secrets.delete(owner, name)
            self._changed(actor, "secret.delete", "secret", name, owner)

    def secret_exists(self, actor: User, name: str, org: str | None = None) -> bool:
        return self.store.secrets.exists(self.owner_for(actor, org), name)

    def get_secret(self, actor: User, name: str, org: str | None = None) -> SecretInfo:
        return self.store.secrets.info(self.owner_for(actor, org), name)

    def list_secrets(self, actor: User, org: str | None = None) -> list[SecretInfo]:
        return self.store.secrets.list(self.owner_for(actor, org))

    def audit(
        self,
        actor: User,
        secret: str | None = None,
        org: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> list[Access]:
        owner = self.owner_for(actor, org)
        before = paging.decode(cursor, str, int) if cursor else None
        if before is not None:
            before = (before[0], _row_id(before[1]))
        rows = self.store.secrets.audit(owner, secret, limit=limit, before=before)
        if secret is not None and not rows:
            self.store.secrets.info(owner, secret)  # 404 for a name that never existed
        return rows  # a deleted secret's trail stays readable

    # environment variables (plain text: shown, never masked, never a secret) -------

    def list_env(self, actor: User, org: str | None = None) -> list[EnvVar]:
        return self.store.environment.list(self.owner_for(actor, org))

    def get_env(self, actor: User, name: str, org: str | None = None) -> EnvVar:
        return self.store.environment.get(self.owner_for(actor, org), name)

    def set_env(self, actor: User, name: str, value: object, org: str | None = None) -> EnvVar:
        """Create or replace a variable; runs that start from now on see it."""
        owner = self.owner_for(actor, org)
        if isinstance(value, str):  # the store checks the rest (store/environment.py)
            check_text(value, "environment variable value")
        with self.store.transaction():
            var = self.store.environment.set(owner, name, value)
            self._changed(actor, "env.set", "env", name, owner)  # the name only: values stay out
        return var

    def delete_env(self, actor: User, name: str, org: str | None = None) -> None:
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            self.store.environment.delete(owner, name)
            self._changed(actor, "env.delete", "env", name, owner)

    # ledgers -------------------------------------------------------------------

    def create_ledger(self, actor: User, name: str, description: str = "", org: str | None = None) -> LedgerRecord:
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            record = self.store.ledgers.create(owner, name, description)
            self._changed(actor, "ledger.create", "ledger", name, owner)
        return record

    def describe_ledger(self, actor: User, name: str, description: str, org: str | None = None) -> LedgerRecord:
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            record = self.store.ledgers.describe(owner, name, description)
            self._changed(actor, "ledger.describe", "ledger", name, owner)
        return record

    def get_ledger(self, actor: User, name: str, org: str | None = None) -> LedgerRecord:
        return self.store.ledgers.get(self.owner_for(actor, org), name)

    def list_ledgers(self, actor: User, org: str | None = None) -> list[LedgerRecord]:
        return self.store.ledgers.list(self.owner_for(actor, org))

    def archive_ledger(self, actor: User, name: str, org: str | None = None) -> None:
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            self.store.ledgers.archive(owner, name)
            self._changed(actor, "ledger.archive", "ledger", name, owner)

    def write_ledger(
        self, actor: User, name: str, mode: WriteMode, data: dict[str, Any] | None = None, org: str | None = None
    ) -> LedgerRecord:
        """Set (replace or merge) or delete a ledger's data; the functions the change
        triggers get a delivery in the same transaction (QueueFull: nothing is written)."""
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            record, change = self.store.ledgers.write(owner, name, mode, data)
            self.bus.ledger_changed(change, depth=0)
            # A person's write is a change (its mode, never the data); runs' writes are not.
            self._changed(actor, "ledger.write", "ledger", name, owner, mode=mode)
        return record

    def ledger_versions(self, actor: User, name: str, org: str | None = None) -> list[dict[str, Any]]:
        return self.store.ledgers.versions(self.owner_for(actor, org), name)

    def ledger_version(self, actor: User, name: str, version: int, org: str | None = None) -> dict[str, Any]:
        return self.store.ledgers.version(self.owner_for(actor, org), name, version)

    # users, organizations, tokens --------------------------------------------

    def create_user(self, actor: User, name: str, *, admin: bool = False) -> User:
        if not actor.is_admin:
            raise PermissionDenied("only an admin can create users")
        with self.store.transaction():
            user = self.store.identity.create_user(name, is_admin=admin)
            self._changed(actor, "user.create", "user", name, None, admin=admin)
        return user

    def create_org(self, actor: User, name: str) -> None:
        with self.store.transaction():
            self.store.identity.create_org(name, actor)
            self._changed(actor, "org.create", "org", name, org_owner(name))

    def add_member(self, actor: User, org: str, user: str) -> None:
        with self.store.transaction():
            self.store.identity.add_member(org, user, actor)
            self._changed(actor, "org.add_member", "org", org, org_owner(org), user=user)

    def create_token(self, actor: User, for_user: str | None = None, label: str | None = None) -> str:
        holder = self._token_owner(actor, for_user)
        with self.store.transaction():
            token = self.store.identity.create_token(holder, label)
            self._token_changed(actor, "token.create", holder, self.store.identity.token_holder(token)[0])
        return token

    def _token_changed(self, actor: User, action: str, holder: User, token_id: int, **details: Any) -> None:
        # The holder's sandbox owns the row, so they see who made or revoked their tokens.
        self._changed(actor, action, "token", str(token_id), holder.owner, user=holder.name, **details)

    def _token_owner(self, actor: User, for_user: str | None) -> User:
        if for_user and for_user != actor.name:
            if not actor.is_admin:
                raise PermissionDenied("only an admin can manage another user's tokens")
            return self.store.identity.user(for_user)
        return actor

    @contextmanager
    def temporary_token(self, actor: User, label: str) -> Iterator[str]:
        """A token for the actor that is revoked when the block ends (the CLI's live tails)."""
        with self.store.transaction():
            token = self.store.identity.create_token(actor, label)
            token_id, _user = self.store.identity.token_holder(token)
            self._token_changed(actor, "token.create", actor, token_id, temporary=True)
        try:
            yield token
        finally:
            with self.store.transaction():
                self.store.identity.revoke_token(actor, token_id)
                self._token_changed(actor, "token.revoke", actor, token_id, temporary=True)

    def list_tokens(self, actor: User, for_user: str | None = None) -> list[dict[str, Any]]:
        return self.store.identity.tokens(self._token_owner(actor, for_user))

    def revoke_token(self, actor: User, token_id: int, for_user: str | None = None) -> None:
        holder = self._token_owner(actor, for_user)
        with self.store.transaction():
            self.store.identity.revoke_token(holder, token_id)
            self._token_changed(actor, "token.revoke", holder, token_id)

    # keys --------------------------------------------------------------------

    def rotate_keys(self, actor: User, *, master: bool = False) -> dict[str, Any]:
        if not actor.is_admin:
            raise PermissionDenied("only an admin can rotate keys")
        if master:
            changed = lambda: self._changed(actor, "keys.rotate_master", "key", "master", None)  # noqa: E731
            return {"master_key": self.store.rotate_master_key(record_change=changed)}
        key_id, count = self.store.rotate_data_key(
            record_change=lambda key_id, count: self._changed(
                actor, "keys.rotate", "key", "data", None, data_key_id=key_id, secrets_reencrypted=count
            )
        )
        return {"data_key_id": key_id, "secrets_reencrypted": count}

    # functions -----------------------------------------------------------------

    def check_function(self, owner: str, files: FunctionFiles) -> None:
        """Every deploy check; one DeployError with every problem, each naming file and line."""
        from runtime.sandbox.executor import compile_function

        problems: list[str] = []
        manifest = files.manifest
        try:
            compile_function(
                files.source,
                filename=files.filename,
                entry=manifest.entry,
                declared_secrets=manifest.secrets,
                max_bytes=self.settings.source_max_bytes,
                max_depth=self.settings.ast_max_depth,
            )
        except DeployError as exc:
            problems.extend(exc.problems)
        manifest_file = files.filename[:-3] + ".logic.json"

        def at(*path: str | int) -> str:
            line = files.manifest_line(*path)
            return f"{manifest_file}:{line}" if line else manifest_file

        settings = self.settings
        if len(manifest.triggers) > settings.triggers_max:
            problems.append(f"{at('triggers')}: at most {settings.triggers_max} triggers, not {len(manifest.triggers)}")
        for i, trigger in enumerate(manifest.triggers):
            problem = event_name_problem(trigger.event_name, settings) if trigger.type == "event" else None
            if problem is not None:
                problems.append(f"{at('triggers', i, 'event_name')}: triggers.{i}.event_name: {problem}")
            if trigger.type == "ledger_change" and not self.store.ledgers.exists(owner, trigger.ledger):
                problems.append(
                    f"{at('triggers', i, 'ledger')}: triggers.{i}.ledger: ledger {trigger.ledger} does not exist in "
                    f"{owner_label(owner)}; create it first with `logic ledgers create {trigger.ledger}`"
                )
        for i, name in enumerate(manifest.secrets):
            try:
                check_name(name, max_chars=settings.secret_name_max_chars)
            except InvalidInput as exc:
                problems.append(f"{at('secrets', i)}: secrets: {exc.message}")
                continue
            if not self.store.secrets.exists(owner, name):
                problems.append(
                    f"{at('secrets', i)}: secrets: secret {name} does not exist in {owner_label(owner)}; "
                    f"create it first with `logic secrets create {name}`"
                )
        if problems:
            raise DeployError(problems)

    def deploy_function(
        self, actor: User, files: FunctionFiles | Path, org: str | None = None, *, function_id: str | None = None
    ) -> FunctionRecord:
        """Create a function or add a new version of it (by name, or by id for PUT)."""
        if not isinstance(files, FunctionFiles):
            files = load_files(files)
        owner = self.owner_for(actor, org)
        if function_id is not None:
            current = self._function(actor, function_id, org)
            if current.name != files.manifest.name:
                raise DeployError([f"manifest: name {files.manifest.name!r} does not match function {current.name!r}"])
        self.check_function(owner, files)
        triggers = trigger_rows(files.manifest, self.clock())
        manifest = files.manifest.model_dump(mode="json", exclude_none=True)
        with self.store.transaction():
            fn = self.store.functions.deploy(
                owner, files.manifest.name, manifest, files.source, triggers, files.manifest.secrets
            )
            self._changed(actor, "function.deploy", "function", fn.name, owner, id=fn.id, version=fn.version)
        return fn

    def _function(self, actor: User, ref: str, org: str | None = None) -> FunctionRecord:
        """A function by name or id, only within the scope asked for (sandbox or `org`)."""
        owner = self.owner_for(actor, org)
        try:
            return self.store.functions.get(owner, ref)
        except NotFound:
            pass
        try:
            fn = self.store.functions.get_by_id(ref)
        except NotFound:
            fn = None
        if fn is None or fn.owner != owner:
            raise NotFound(f"function {ref} does not exist")  # 404, not 403: ids are not a directory
        return fn

    def get_function(self, actor: User, ref: str, org: str | None = None) -> FunctionRecord:
        return self._function(actor, ref, org)

    def function_versions(self, actor: User, ref: str, org: str | None = None) -> list[dict[str, Any]]:
        return self.store.functions.versions(self._function(actor, ref, org).id)

    def function_triggers(self, actor: User, ref: str, org: str | None = None) -> list[TriggerRow]:
        """The function's triggers, schedules with their next fire time."""
        return self.store.functions.triggers(self._function(actor, ref, org).id)

    def list_functions(self, actor: User, org: str | None = None) -> list[FunctionRecord]:
        return self.store.functions.list(self.owner_for(actor, org))

    def set_function_enabled(self, actor: User, ref: str, enabled: bool, org: str | None = None) -> FunctionRecord:
        fn = self._function(actor, ref, org)
        with self.store.transaction():
            self.store.functions.set_enabled(fn.id, enabled)
            action = "function.enable" if enabled else "function.disable"
            self._changed(actor, action, "function", fn.name, fn.owner, id=fn.id)
        return self.store.functions.get_by_id(fn.id)

    def delete_function(self, actor: User, ref: str, org: str | None = None) -> None:
        fn = self._function(actor, ref, org)
        with self.store.transaction():
            self.store.functions.delete(fn.id)
            self._changed(actor, "function.delete", "function", fn.name, fn.owner, id=fn.id)

    def function_runs(
        self, actor: User, ref: str, org: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; `cursor` (paging.next_cursor of the page before) starts after it."""
        before = paging.decode(cursor, str, str) if cursor else None
        return self.store.functions.runs(self._function(actor, ref, org).id, limit, before=before)

    def get_run(self, actor: User, run_id: str, ref: str | None = None, org: str | None = None) -> dict[str, Any]:
        owner = self.owner_for(actor, org)
        record = self.store.functions.run(run_id)
        fn = self.store.functions.get_by_id(record["function_id"])
        if fn.owner != owner or (ref is not None and ref not in (fn.id, fn.name)):
            raise NotFound(f"run {run_id} does not exist")
        return record

    def execute_function(
        self,
        actor: User,
        target: FunctionFiles | Path | str,
        *,
        event_name: str | None = None,
        data: str | None = None,
        org: str | None = None,
    ) -> dict[str, Any]:
        """A test run of files (FunctionFiles or a local Path: nothing deployed, nothing stored
        but the access audit), or a manual run of a deployed function named by a str ref
        (stored in its logs). A str is never read as a path: callers decide what is local."""
        event = None
        trigger = {"type": "manual"}
        if event_name is not None:
            check_event(event_name, data, self.settings)
            event = {
                "id": uuid.uuid4().hex,
                "name": event_name,
                "data": data,
                "published_at": now_iso(),
                "source": f"manual:{actor.name}",
            }
        if isinstance(target, str):
            fn = self._function(actor, target, org)
            with self._requested_runs.enter(fn.owner):
                return self.engine.run(fn, trigger, event=event)
        files = target if isinstance(target, FunctionFiles) else load_files(target)
        owner = self.owner_for(actor, org)
        self.check_function(owner, files)
        now = now_iso()
        manifest = files.manifest.model_dump(mode="json", exclude_none=True)
        fn = FunctionRecord(
            id="test-run",
            owner=owner,
            name=files.manifest.name,
            enabled=True,
            version=0,
            created_at=now,
            updated_at=now,
            manifest=manifest,
            source=files.source,
        )
        with self._requested_runs.enter(owner):
            return self.engine.run(fn, trigger, event=event, persist=False)

    # runs: replay, today's counts, the deploy guard (issue 13) ------------------------

    def replay_run(self, actor: User, run_id: str, ref: str | None = None, org: str | None = None) -> dict[str, Any]:
        """Run the function's current version again with the input run `run_id` had (its
        event, schedule time or ledger change), as a new run marked `replay_of`; returns the
        new run's record. Like a manual run it counts against the owner's requested runs."""
        try:
            record = self.get_run(actor, run_id, ref, org)
        except NotFound:
            raise NotFound(
                f"run {run_id} does not exist, so it cannot be replayed (a function's runs are deleted with it)"
            ) from None
        fn = self.store.functions.get_by_id(record["function_id"])
        raw = self.store.functions.run_input(run_id)
        if raw is None:
            raise Conflict(
                f"run {run_id} has no recorded input (it ran before inputs were kept), so it cannot be replayed"
            )
        replayed = TriggerInput.from_json(raw)
        # Threat: the input may hold a value the first run masked (its event carried the
        # secret it read), since updated or no longer declared: this run reads other values,
        # so it masks those of the first run's secrets too -- current and kept versions.
        earlier = self.store.secrets.every_value(fn.owner, record.get("secrets_accessed") or [])
        if earlier and masking_cost(earlier) > self.settings.masking_bytes_per_run_max:
            raise Conflict(
                f"run {run_id} cannot be replayed: masking the values of the secrets it read "
                "(with their kept versions) would take more memory than one run may use"
            )
        with self._requested_runs.enter(fn.owner):
            return self.engine.run(
                fn,
                replayed.trigger,
                event=replayed.event,
                scheduled=replayed.scheduled,
                ledger_change=replayed.ledger_change,
                replay_of=run_id,
                mask_also=earlier,
            )

    def runs_today(self, actor: User, org: str | None = None) -> dict[str, dict[str, int]]:
        """Per function id, today's (UTC) run counts among its kept runs: success, error
        (every other failure but a timeout: error, memory_exceeded, crashed) and timeout.
        A function without a run today is absent: see no_runs()."""
        start = self.clock().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        owner = self.owner_for(actor, org)
        counts = self.store.functions.run_counts(owner, iso(start), iso(start + timedelta(days=1)))
        today = {}
        for function_id, by_status in counts.items():
            row = no_runs()
            for status, n in by_status.items():
                row[status if status in row else "error"] += n
            today[function_id] = row
        return today

    def deploy_tested(
        self,
        actor: User,
        files: FunctionFiles | Path,
        *,
        event_name: str,
        data: str | None = None,
        org: str | None = None,
    ) -> tuple[dict[str, Any], FunctionRecord | None]:
        """particle-cli's habit: test-run the files with this event first (nothing stored but
        the access audit) and deploy them only if that run succeeds. Returns the test run's
        record, and the function deployed (None: the run failed, nothing was deployed)."""
        if not isinstance(files, FunctionFiles):
            files = load_files(files)
        record = self.execute_function(actor, files, event_name=event_name, data=data, org=org)
        if record["status"] != "success":
            return record, None
        return record, self.deploy_function(actor, files, org)

    # events ----------------------------------------------------------------------

    def prune_history(self) -> dict[str, Any]:
        """Drop finished events/deliveries and old audit rows past their retention."""
        now = self.clock()
        events = self.store.events.prune(iso(now - timedelta(days=self.settings.event_retention_days)))
        audit = self.store.secrets.prune_audit(iso(now - timedelta(days=self.settings.audit_retention_days)))
        sessions = self.store.sessions.prune(now)
        changes = self.store.changes.prune(
            iso(now - timedelta(days=self.settings.change_audit_retention_days)), now=iso(now)
        )
        return {
            "events_and_deliveries": events,
            "audit_rows": audit,
            "console_sessions": sessions,
            "change_rows": changes,
        }

    def publish_event(self, actor: User, name: str, data: str | None = None, org: str | None = None) -> dict[str, Any]:
        """Accept an event durably (with a delivery per matching target) and return its id."""
        return self.bus.publish(self.owner_for(actor, org), name, data, source=f"user:{actor.name}")

    # integrations (IntegrationRunner.validate holds the spec's rules) ---------------

    def _integration(self, actor: User, ref: str, org: str | None) -> IntegrationRecord:
        return self.store.integrations.find(self.owner_for(actor, org), ref)

    def create_integration(self, actor: User, spec: dict[str, Any], org: str | None = None) -> IntegrationRecord:
        owner = self.owner_for(actor, org)
        checked = self.integration_runner.validate(owner, spec)
        with self.store.transaction():
            record = self.store.integrations.create(owner, checked.to_json())
            self._changed(actor, "integration.create", "integration", record.name, owner, id=record.id)
        return record

    def update_integration(
        self, actor: User, ref: str, spec: dict[str, Any], org: str | None = None
    ) -> IntegrationRecord:
        current = self._integration(actor, ref, org)
        checked = self.integration_runner.validate(current.owner, spec)
        with self.store.transaction():
            record = self.store.integrations.update(current.id, checked.to_json())
            self._changed(actor, "integration.update", "integration", record.name, current.owner, id=record.id)
        return record

    def get_integration(self, actor: User, ref: str, org: str | None = None) -> IntegrationRecord:
        return self._integration(actor, ref, org)

    def list_integrations(self, actor: User, org: str | None = None) -> list[IntegrationRecord]:
        return self.store.integrations.list(self.owner_for(actor, org))

    def delete_integration(self, actor: User, ref: str, org: str | None = None) -> None:
        current = self._integration(actor, ref, org)
        with self.store.transaction():
            self.store.integrations.delete(current.id)
            self._changed(actor, "integration.delete", "integration", current.name, current.owner, id=current.id)

    def integration_logs(
        self, actor: User, ref: str, org: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> list[dict[str, Any]]:
        before_id = _row_id(paging.decode(cursor, int)[0]) if cursor else None
        return self.store.integrations.logs(self._integration(actor, ref, org).id, limit, before_id=before_id)


def _row_id(value: int) -> int:
    """A row id from a cursor: an SQLite integer (threat: a forged cursor holding 10**30
    was an OverflowError in the driver, a 500), else InvalidInput like any bad cursor."""
    if not -(2**63) <= value < 2**63:
        raise InvalidInput("cursor: not a cursor from this listing (use the next_cursor of the page before)")
    return value


def no_runs() -> dict[str, int]:
    """A function's counts on a day without runs (see Service.runs_today)."""
    return {"success": 0, "error": 0, "timeout": 0}


__all__ = ["Service", "no_runs"]
