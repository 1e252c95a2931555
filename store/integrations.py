"""Webhook integrations and their request/response logs.

An integration belongs to an owner, has a name unique per owner, an event
prefix and a config: everything of its NAME.webhook.json except name, event
and enabled (so the declared `secrets` live in the config). The runtime
validates the config before it gets here; this module keeps the rules of the
data itself: unique names, declared secrets registered as usages (so a
secret in use cannot be deleted), and only the newest `logs_kept` log
records per integration. Log records arrive already redacted.
"""

from __future__ import annotations

import builtins
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from .backend import INTEGRITY_ERRORS, Backend
from .clock import now_iso
from .errors import Conflict, NotFound
from .secrets import SecretStore

CONSUMER_KIND = "integration"


@dataclass(frozen=True)
class IntegrationRecord:
    id: str
    owner: str
    name: str
    event_prefix: str
    config: dict[str, Any] = field(repr=False)
    enabled: bool
    created_at: str
    updated_at: str

    @property
    def secrets(self) -> list[str]:
        return list(self.config.get("secrets", []))

    def spec(self) -> dict[str, Any]:
        """The NAME.webhook.json this record was made from."""
        return {"name": self.name, "event": self.event_prefix, **self.config, "enabled": self.enabled}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            **self.spec(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


_SELECT = "SELECT id, owner, name, event_prefix, config, enabled, created_at, updated_at FROM integrations "


def _record(row: Any) -> IntegrationRecord:
    return IntegrationRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), bool(row[5]), row[6], row[7])


def _split(spec: dict[str, Any]) -> tuple[str, str, bool, dict[str, Any]]:
    config = {k: v for k, v in spec.items() if k not in ("name", "event", "enabled")}
    config["secrets"] = list(config.get("secrets") or [])
    return spec["name"], spec["event"], bool(spec.get("enabled", True)), config


class IntegrationStore:
    """IntegrationRepository on SQLite."""

    def __init__(self, db: Backend, secrets: SecretStore, *, logs_kept: int):
        self.db = db
        self.secrets = secrets
        self.logs_kept = logs_kept

    # writes ----------------------------------------------------------------

    def create(self, owner: str, spec: dict[str, Any]) -> IntegrationRecord:
        """Insert a validated spec (NAME.webhook.json shape); its secrets become usages."""
        name, prefix, enabled, config = _split(spec)
        iid, now = str(uuid.uuid4()), now_iso()
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO integrations (id, owner, name, event_prefix, config, enabled, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (iid, owner, name, prefix, json.dumps(config), int(enabled), now, now),
                )
                self.secrets.set_usages(owner, CONSUMER_KIND, iid, name, config["secrets"])
        except INTEGRITY_ERRORS:
            raise Conflict(f"integration {name} already exists") from None
        return self.get_by_id(iid)

    def update(self, integration_id: str, spec: dict[str, Any]) -> IntegrationRecord:
        """Replace the whole spec (a rename included); usages follow the new secrets."""
        name, prefix, enabled, config = _split(spec)
        try:
            with self.db.transaction() as conn:
                row = conn.execute("SELECT owner FROM integrations WHERE id = ?", (integration_id,)).fetchone()
                if row is None:
                    raise NotFound(f"integration {integration_id} does not exist")
                conn.execute(
                    "UPDATE integrations SET name = ?, event_prefix = ?, config = ?, enabled = ?, updated_at = ? "
                    "WHERE id = ?",
                    (name, prefix, json.dumps(config), int(enabled), now_iso(), integration_id),
                )
                self.secrets.set_usages(row[0], CONSUMER_KIND, integration_id, name, config["secrets"])
        except INTEGRITY_ERRORS:
            raise Conflict(f"integration {name} already exists") from None
        return self.get_by_id(integration_id)

    def set_enabled(self, integration_id: str, enabled: bool) -> None:
        with self.db.transaction() as conn:
            if (
                conn.execute(
                    "UPDATE integrations SET enabled = ?, updated_at = ? WHERE id = ?",
                    (int(enabled), now_iso(), integration_id),
                ).rowcount
                == 0
            ):
                raise NotFound(f"integration {integration_id} does not exist")

    def delete(self, integration_id: str) -> None:
        """Remove the integration, its usages (freeing its secrets) and its logs."""
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM secret_usages WHERE consumer_kind = ? AND consumer_id = ?", (CONSUMER_KIND, integration_id)
            )
            conn.execute("DELETE FROM integration_logs WHERE integration_id = ?", (integration_id,))
            if conn.execute("DELETE FROM integrations WHERE id = ?", (integration_id,)).rowcount == 0:
                raise NotFound(f"integration {integration_id} does not exist")

    # reads -----------------------------------------------------------------

    def get(self, owner: str, name: str) -> IntegrationRecord:
        row = self.db.one(_SELECT + "WHERE owner = ? AND name = ?", (owner, name))
        if row is None:
            raise NotFound(f"integration {name} does not exist")
        return _record(row)

    def get_by_id(self, integration_id: str) -> IntegrationRecord:
        row = self.db.one(_SELECT + "WHERE id = ?", (integration_id,))
        if row is None:
            raise NotFound(f"integration {integration_id} does not exist")
        return _record(row)

    def find(self, owner: str, ref: str) -> IntegrationRecord:
        """By id or by name, within one owner (another owner's id is "not found")."""
        row = self.db.one(
            _SELECT + "WHERE owner = ? AND (id = ? OR name = ?) ORDER BY id = ? DESC LIMIT 1", (owner, ref, ref, ref)
        )
        if row is None:
            raise NotFound(f"integration {ref} does not exist")
        return _record(row)

    def list(self, owner: str) -> list[IntegrationRecord]:
        return [_record(r) for r in self.db.all(_SELECT + "WHERE owner = ? ORDER BY name", (owner,))]

    def for_event(self, owner: str, event_name: str) -> builtins.list[str]:
        """Ids of the owner's enabled integrations whose prefix starts `event_name` (case-sensitive)."""
        # substr, not LIKE: LIKE folds case and treats % and _ in a prefix as wildcards.
        return [
            r[0]
            for r in self.db.all(
                "SELECT id FROM integrations WHERE owner = ? AND enabled = 1 "
                "AND substr(?, 1, length(event_prefix)) = event_prefix ORDER BY name",
                (owner, event_name),
            )
        ]

    # logs --------------------------------------------------------------------

    def add_log(self, integration_id: str, event_id: str | None, record: dict[str, Any]) -> int:
        """Store a redacted log record and drop the oldest beyond `logs_kept` (caller's transaction)."""
        at = record.get("at") or now_iso()
        with self.db.transaction() as conn:
            log_id = conn.execute(
                "INSERT INTO integration_logs (integration_id, event_id, at, record) VALUES (?, ?, ?, ?) RETURNING id",
                (integration_id, event_id, at, json.dumps(record)),
            ).fetchone()[0]
            conn.execute(
                "DELETE FROM integration_logs WHERE integration_id = ? AND id <= (SELECT id FROM integration_logs "
                "WHERE integration_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (integration_id, integration_id, max(self.logs_kept, 1)),
            )
        return cast(int, log_id)

    def log(self, log_id: int) -> tuple[str, dict[str, Any]]:
        """(integration id, record with its `id` and `event_id`): as its live stream carried it."""
        row = self.db.one("SELECT integration_id, event_id, record FROM integration_logs WHERE id = ?", (log_id,))
        if row is None:
            raise NotFound(f"integration log {log_id} does not exist")
        return row[0], {**json.loads(row[2]), "id": log_id, "event_id": row[1]}

    def logs(
        self, integration_id: str, limit: int = 100, *, before_id: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Newest first; each record with its `id`, `event_id` and `at`; with `before_id`,
        the ones older than that log (the next page)."""
        rows = self.db.all(
            "SELECT id, event_id, at, record FROM integration_logs WHERE integration_id = ? AND id < ? "
            "ORDER BY id DESC LIMIT ?",
            (integration_id, before_id if before_id is not None else 2**63 - 1, limit),
        )
        return [{**json.loads(r[3]), "id": r[0], "event_id": r[1], "at": r[2]} for r in rows]


__all__ = ["IntegrationRecord", "IntegrationStore"]
