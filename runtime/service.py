"""The one service layer: the CLI, the HTTP API and the console all call this.

Every method takes the acting user and, where it applies, an organization;
it resolves the owner, checks membership, and calls the store. Interfaces
never write SQL and never re-implement a rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import paging
from runtime.events.bus import EventBus
from runtime.events.rules import check_event, event_name_problem
from runtime.events.streams import Streams
from runtime.execution.owner_gate import OwnerGate
from runtime.execution.redactor import set_cache_bytes
from runtime.integrations.runner import IntegrationRunner
from runtime.manifest import FunctionFiles, load_files, trigger_rows
from store import InitResult, Store
from store.clock import iso, now_iso, utcnow
from store.environment import EnvVar
from store.errors import DeployError, InvalidInput, NotFound, PermissionDenied
from store.functions import FunctionRecord, TriggerRow
from store.identity import User, owner_label
from store.integrations import IntegrationRecord
from store.ledgers import LedgerRecord, WriteMode
from store.secrets import Access, SecretInfo, check_name
from store.sessions import Session
from store.settings import Settings

if TYPE_CHECKING:
    from runtime.events.dispatcher import Dispatcher
    from runtime.events.scheduler import Scheduler
    from runtime.execution.engine import Engine
    from runtime.workers.pool import Pool


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

    def dispatcher(self, *, threads: int | None = None, poll_s: float | None = None) -> Dispatcher:
        """Delivery threads over this service's store, engine, webhooks and bus (not started)."""
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
        )

    def scheduler(self, *, clock: Callable[[], datetime] | None = None) -> Scheduler:
        """The cron scheduler over this service's store, ringing the bus's doorbell (not started)."""
        from runtime.events.scheduler import Scheduler

        return Scheduler(self.store, clock=clock or self.clock, wake=self.bus.wake, housekeeping=self.prune_history)

    def close(self) -> None:
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

    # secrets -----------------------------------------------------------------

    def check_secret_name(self, name: str) -> str:
        """The secret-name rule alone (the CLI checks it before asking for a value)."""
        return check_name(name, max_chars=self.settings.secret_name_max_chars)

    def create_secret(self, actor: User, name: str, value: object, org: str | None = None) -> SecretInfo:
        return self.store.secrets.create(self.owner_for(actor, org), name, value)

    def update_secret(self, actor: User, name: str, value: object, org: str | None = None) -> SecretInfo:
        return self.store.secrets.update(self.owner_for(actor, org), name, value)

    def delete_secret(self, actor: User, name: str, org: str | None = None) -> None:
        self.store.secrets.delete(self.owner_for(actor, org), name)

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
        return self.store.environment.set(self.owner_for(actor, org), name, value)

    def delete_env(self, actor: User, name: str, org: str | None = None) -> None:
        self.store.environment.delete(self.owner_for(actor, org), name)

    # ledgers -------------------------------------------------------------------

    def create_ledger(self, actor: User, name: str, description: str = "", org: str | None = None) -> LedgerRecord:
        return self.store.ledgers.create(self.owner_for(actor, org), name, description)

    def describe_ledger(self, actor: User, name: str, description: str, org: str | None = None) -> LedgerRecord:
        return self.store.ledgers.describe(self.owner_for(actor, org), name, description)

    def get_ledger(self, actor: User, name: str, org: str | None = None) -> LedgerRecord:
        return self.store.ledgers.get(self.owner_for(actor, org), name)

    def list_ledgers(self, actor: User, org: str | None = None) -> list[LedgerRecord]:
        return self.store.ledgers.list(self.owner_for(actor, org))

    def archive_ledger(self, actor: User, name: str, org: str | None = None) -> None:
        self.store.ledgers.archive(self.owner_for(actor, org), name)

    def write_ledger(
        self, actor: User, name: str, mode: WriteMode, data: dict[str, Any] | None = None, org: str | None = None
    ) -> LedgerRecord:
        """Set (replace or merge) or delete a ledger's data; the functions the change
        triggers get a delivery in the same transaction (QueueFull: nothing is written)."""
        owner = self.owner_for(actor, org)
        with self.store.transaction():
            record, change = self.store.ledgers.write(owner, name, mode, data)
            self.bus.ledger_changed(change, depth=0)
        return record

    def ledger_versions(self, actor: User, name: str, org: str | None = None) -> list[dict[str, Any]]:
        return self.store.ledgers.versions(self.owner_for(actor, org), name)

    def ledger_version(self, actor: User, name: str, version: int, org: str | None = None) -> dict[str, Any]:
        return self.store.ledgers.version(self.owner_for(actor, org), name, version)

    # users, organizations, tokens --------------------------------------------

    def create_user(self, actor: User, name: str, *, admin: bool = False) -> User:
        if not actor.is_admin:
            raise PermissionDenied("only an admin can create users")
        return self.store.identity.create_user(name, is_admin=admin)

    def create_org(self, actor: User, name: str) -> None:
        self.store.identity.create_org(name, actor)

    def add_member(self, actor: User, org: str, user: str) -> None:
        self.store.identity.add_member(org, user, actor)

    def create_token(self, actor: User, for_user: str | None = None, label: str | None = None) -> str:
        return self.store.identity.create_token(self._token_owner(actor, for_user), label)

    def _token_owner(self, actor: User, for_user: str | None) -> User:
        if for_user and for_user != actor.name:
            if not actor.is_admin:
                raise PermissionDenied("only an admin can manage another user's tokens")
            return self.store.identity.user(for_user)
        return actor

    @contextmanager
    def temporary_token(self, actor: User, label: str) -> Iterator[str]:
        """A token for the actor that is revoked when the block ends (the CLI's live tails)."""
        token = self.store.identity.create_token(actor, label)
        token_id, _user = self.store.identity.token_holder(token)
        try:
            yield token
        finally:
            self.store.identity.revoke_token(actor, token_id)

    def list_tokens(self, actor: User, for_user: str | None = None) -> list[dict[str, Any]]:
        return self.store.identity.tokens(self._token_owner(actor, for_user))

    def revoke_token(self, actor: User, token_id: int, for_user: str | None = None) -> None:
        self.store.identity.revoke_token(self._token_owner(actor, for_user), token_id)

    # keys --------------------------------------------------------------------

    def rotate_keys(self, actor: User, *, master: bool = False) -> dict[str, Any]:
        if not actor.is_admin:
            raise PermissionDenied("only an admin can rotate keys")
        if master:
            return {"master_key": self.store.rotate_master_key()}
        key_id, count = self.store.rotate_data_key()
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
        return self.store.functions.deploy(
            owner, files.manifest.name, manifest, files.source, triggers, files.manifest.secrets
        )

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
        self.store.functions.set_enabled(fn.id, enabled)
        return self.store.functions.get_by_id(fn.id)

    def delete_function(self, actor: User, ref: str, org: str | None = None) -> None:
        self.store.functions.delete(self._function(actor, ref, org).id)

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

    # events ----------------------------------------------------------------------

    def prune_history(self) -> dict[str, Any]:
        """Drop finished events/deliveries and old audit rows past their retention."""
        now = self.clock()
        events = self.store.events.prune(iso(now - timedelta(days=self.settings.event_retention_days)))
        audit = self.store.secrets.prune_audit(iso(now - timedelta(days=self.settings.audit_retention_days)))
        sessions = self.store.sessions.prune(now)
        return {"events_and_deliveries": events, "audit_rows": audit, "console_sessions": sessions}

    def publish_event(self, actor: User, name: str, data: str | None = None, org: str | None = None) -> dict[str, Any]:
        """Accept an event durably (with a delivery per matching target) and return its id."""
        return self.bus.publish(self.owner_for(actor, org), name, data, source=f"user:{actor.name}")

    # integrations (IntegrationRunner.validate holds the spec's rules) ---------------

    def _integration(self, actor: User, ref: str, org: str | None) -> IntegrationRecord:
        return self.store.integrations.find(self.owner_for(actor, org), ref)

    def create_integration(self, actor: User, spec: dict[str, Any], org: str | None = None) -> IntegrationRecord:
        owner = self.owner_for(actor, org)
        checked = self.integration_runner.validate(owner, spec)
        return self.store.integrations.create(owner, checked.to_json())

    def update_integration(
        self, actor: User, ref: str, spec: dict[str, Any], org: str | None = None
    ) -> IntegrationRecord:
        current = self._integration(actor, ref, org)
        checked = self.integration_runner.validate(current.owner, spec)
        return self.store.integrations.update(current.id, checked.to_json())

    def get_integration(self, actor: User, ref: str, org: str | None = None) -> IntegrationRecord:
        return self._integration(actor, ref, org)

    def list_integrations(self, actor: User, org: str | None = None) -> list[IntegrationRecord]:
        return self.store.integrations.list(self.owner_for(actor, org))

    def delete_integration(self, actor: User, ref: str, org: str | None = None) -> None:
        self.store.integrations.delete(self._integration(actor, ref, org).id)

    def integration_logs(
        self, actor: User, ref: str, org: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> list[dict[str, Any]]:
        before_id = paging.decode(cursor, int)[0] if cursor else None
        return self.store.integrations.logs(self._integration(actor, ref, org).id, limit, before_id=before_id)


__all__ = ["Service"]
