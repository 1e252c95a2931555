"""The one service layer: the CLI, the HTTP API and the console all call this.

Every method takes the acting user and, where it applies, an organization;
it resolves the owner, checks membership, and calls the store. Interfaces
never write SQL and never re-implement a rule.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from store import Store
from store.clock import iso, now_iso, utcnow
from store.errors import DeployError, NotFound, PermissionDenied
from store.events import EventStore
from store.functions import FunctionRecord, FunctionStore, TriggerRow
from store.integrations import IntegrationRecord, IntegrationStore
from store.identity import User, owner_label
from store.secrets import Access, SecretInfo
from store.settings import Settings

from runtime.events.bus import EventBus
from runtime.integrations.runner import IntegrationRunner
from runtime.events.cron import next_fire
from runtime.manifest import FunctionFiles, load_files
from runtime.execution.owner_gate import OwnerGate
from runtime.execution.redactor import set_cache_bytes


class Service:
    def __init__(self, store: Store, *, pool=None, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.settings: Settings = store.settings
        self.clock = clock
        settings = self.settings
        set_cache_bytes(settings.redactor_cache_mb * 1024 * 1024)
        self.functions = FunctionStore(store.db, store.secrets, runs_kept=settings.runs_kept)
        self.events = EventStore(store.db, max_pending=settings.queue_max_pending,
                                 max_pending_per_owner=settings.queue_max_pending_per_owner,
                                 max_attempts=settings.delivery_max_attempts)
        self.integration_store = IntegrationStore(store.db, store.secrets, logs_kept=settings.integration_logs_kept)
        self.integrations = IntegrationRunner(store, self.integration_store, settings)
        self.bus = EventBus(settings, self.events, self.functions, self.integration_store)
        self.pool = pool
        self._engine = None
        self._requested_runs = OwnerGate(settings.owner_runs_max)

    @classmethod
    def open(cls, settings: Settings, *, runtime: bool = False, clock: Callable[[], datetime] = utcnow) -> "Service":
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
    def engine(self):
        if self._engine is None:
            if self.pool is None:
                raise RuntimeError("this service was opened without the runtime (Service.open(runtime=True))")
            from runtime.execution.engine import Engine

            self._engine = Engine(self.settings, self.store, self.functions, self.pool, clock=self.clock)
            self._engine.event_sink = self.bus.publish_from_run
        return self._engine

    def close(self) -> None:
        self.integrations.close()
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

    def owner_for(self, actor: User, org: str | None = None) -> str:
        if org is None:
            return actor.owner
        return self.store.identity.require_member(org, actor)

    # secrets -----------------------------------------------------------------

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

    def audit(self, actor: User, secret: str | None = None, org: str | None = None,
              limit: int = 1000) -> list[Access]:
        owner = self.owner_for(actor, org)
        rows = self.store.secrets.audit(owner, secret, limit=limit)
        if secret is not None and not rows:
            self.store.secrets.info(owner, secret)  # 404 for a name that never existed
        return rows  # a deleted secret's trail stays readable

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

    def list_tokens(self, actor: User, for_user: str | None = None) -> list[dict]:
        return self.store.identity.tokens(self._token_owner(actor, for_user))

    def revoke_token(self, actor: User, token_id: int, for_user: str | None = None) -> None:
        self.store.identity.revoke_token(self._token_owner(actor, for_user), token_id)

    # keys --------------------------------------------------------------------

    def rotate_keys(self, actor: User, *, master: bool = False) -> dict:
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
            compile_function(files.source, filename=files.filename, entry=manifest.entry,
                             declared_secrets=manifest.secrets, max_bytes=self.settings.source_max_bytes,
                             max_depth=self.settings.ast_max_depth)
        except DeployError as exc:
            problems.extend(exc.problems)
        manifest_file = files.filename[:-3] + ".logic.json"
        limit = self.settings.event_name_max_chars  # the manifest model allows 64; the operator may allow fewer
        for i, trigger in enumerate(manifest.triggers):
            if trigger.type == "event" and len(trigger.event_name) > limit:
                line = files.manifest_line("triggers", i, "event_name")
                where = f"{manifest_file}:{line}" if line else manifest_file
                problems.append(f"{where}: triggers.{i}.event_name: event names are at most {limit} characters here")
        for i, name in enumerate(manifest.secrets):
            if not self.store.secrets.exists(owner, name):
                line = files.manifest_line("secrets", i)
                where = f"{manifest_file}:{line}" if line else manifest_file
                problems.append(f"{where}: secrets: secret {name} does not exist in {owner_label(owner)}; "
                                f"create it first with `logic secrets create {name}`")
        if problems:
            raise DeployError(problems)

    def deploy_function(self, actor: User, files: FunctionFiles | Path, org: str | None = None,
                        *, function_id: str | None = None) -> FunctionRecord:
        """Create a function or add a new version of it (by name, or by id for PUT)."""
        if not isinstance(files, FunctionFiles):
            files = load_files(files, triggers_max=self.settings.triggers_max)
        owner = self.owner_for(actor, org)
        if function_id is not None:
            current = self._function(actor, function_id, org)
            if current.name != files.manifest.name:
                raise DeployError([f"manifest: name {files.manifest.name!r} does not match function {current.name!r}"])
        self.check_function(owner, files)
        now = self.clock()
        triggers = []
        for t in files.manifest.triggers:
            if t.type == "event":
                triggers.append(TriggerRow("event", event_name=t.event_name))
            else:
                triggers.append(TriggerRow("schedule", cron=t.cron, timezone=t.timezone,
                                           next_fire_at=iso(next_fire(t.cron, now, t.timezone))))
        manifest = files.manifest.model_dump(mode="json", exclude_none=True)
        return self.functions.deploy(owner, files.manifest.name, manifest, files.source, triggers,
                                     files.manifest.secrets)

    def _function(self, actor: User, ref: str, org: str | None = None) -> FunctionRecord:
        """A function by name or id, only within the scope asked for (sandbox or `org`)."""
        owner = self.owner_for(actor, org)
        try:
            return self.functions.get(owner, ref)
        except NotFound:
            pass
        try:
            fn = self.functions.get_by_id(ref)
        except NotFound:
            fn = None
        if fn is None or fn.owner != owner:
            raise NotFound(f"function {ref} does not exist")  # 404, not 403: ids are not a directory
        return fn

    def get_function(self, actor: User, ref: str, org: str | None = None) -> FunctionRecord:
        return self._function(actor, ref, org)

    def list_functions(self, actor: User, org: str | None = None) -> list[FunctionRecord]:
        return self.functions.list(self.owner_for(actor, org))

    def set_function_enabled(self, actor: User, ref: str, enabled: bool, org: str | None = None) -> FunctionRecord:
        fn = self._function(actor, ref, org)
        self.functions.set_enabled(fn.id, enabled)
        return self.functions.get_by_id(fn.id)

    def delete_function(self, actor: User, ref: str, org: str | None = None) -> None:
        self.functions.delete(self._function(actor, ref, org).id)

    def function_runs(self, actor: User, ref: str, org: str | None = None, limit: int = 100) -> list[dict]:
        return self.functions.runs(self._function(actor, ref, org).id, limit)

    def get_run(self, actor: User, run_id: str, ref: str | None = None, org: str | None = None) -> dict:
        owner = self.owner_for(actor, org)
        record = self.functions.run(run_id)
        fn = self.functions.get_by_id(record["function_id"])
        if fn.owner != owner or (ref is not None and ref not in (fn.id, fn.name)):
            raise NotFound(f"run {run_id} does not exist")
        return record

    def execute_function(self, actor: User, target: FunctionFiles | Path | str, *, event_name: str | None = None,
                         data: str | None = None, org: str | None = None) -> dict:
        """A test run of files (FunctionFiles or a local Path: nothing deployed, nothing stored
        but the access audit), or a manual run of a deployed function named by a str ref
        (stored in its logs). A str is never read as a path: callers decide what is local."""
        event = None
        trigger = {"type": "manual"}
        if event_name is not None:
            from runtime.events.rules import check_event

            check_event(event_name, data, self.settings)
            event = {"id": uuid.uuid4().hex, "name": event_name, "data": data,
                     "published_at": now_iso(), "source": f"manual:{actor.name}"}
        if isinstance(target, str):
            fn = self._function(actor, target, org)
            with self._requested_runs.enter(fn.owner):
                return self.engine.run(fn, trigger, event=event)
        files = target if isinstance(target, FunctionFiles) else load_files(target, triggers_max=self.settings.triggers_max)
        owner = self.owner_for(actor, org)
        self.check_function(owner, files)
        now = now_iso()
        manifest = files.manifest.model_dump(mode="json", exclude_none=True)
        fn = FunctionRecord(id="test-run", owner=owner, name=files.manifest.name, enabled=True, version=0,
                            created_at=now, updated_at=now, manifest=manifest, source=files.source)
        with self._requested_runs.enter(owner):
            return self.engine.run(fn, trigger, event=event, persist=False)


    # events ----------------------------------------------------------------------

    def prune_history(self) -> dict:
        """Drop finished events/deliveries and old audit rows past their retention."""
        now = self.clock()
        events = self.events.prune(iso(now - timedelta(days=self.settings.event_retention_days)))
        audit = self.store.secrets.prune_audit(iso(now - timedelta(days=self.settings.audit_retention_days)))
        return {"events_and_deliveries": events, "audit_rows": audit}

    def publish_event(self, actor: User, name: str, data: str | None = None, org: str | None = None) -> dict:
        """Accept an event durably (with a delivery per matching target) and return its id."""
        return self.bus.publish(self.owner_for(actor, org), name, data, source=f"user:{actor.name}")

    # integrations (the owner is resolved here; IntegrationRunner holds the rules) ------

    def create_integration(self, actor: User, spec: dict, org: str | None = None) -> IntegrationRecord:
        return self.integrations.create(self.owner_for(actor, org), spec)

    def update_integration(self, actor: User, ref: str, spec: dict, org: str | None = None) -> IntegrationRecord:
        return self.integrations.update(self.owner_for(actor, org), ref, spec)

    def get_integration(self, actor: User, ref: str, org: str | None = None) -> IntegrationRecord:
        return self.integrations.get(self.owner_for(actor, org), ref)

    def list_integrations(self, actor: User, org: str | None = None) -> list[IntegrationRecord]:
        return self.integrations.list(self.owner_for(actor, org))

    def delete_integration(self, actor: User, ref: str, org: str | None = None) -> None:
        self.integrations.delete(self.owner_for(actor, org), ref)

    def integration_logs(self, actor: User, ref: str, org: str | None = None, limit: int = 100) -> list[dict]:
        return self.integrations.logs(self.owner_for(actor, org), ref, limit)


__all__ = ["Service"]
