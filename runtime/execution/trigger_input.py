"""What started a run, kept with its record so the run can be replayed.

Every stored run keeps its trigger input twice:

- for display, in the record's `trigger`: the type, the event's id, name,
  data, source and publication time, a schedule's time and cron, a ledger
  change's ledger and kind -- redacted with the run's own redactor like
  every other part of the record;
- for replay, the raw input (the event and its data exactly as the function
  saw them, the schedule, the ledger change with its data) sealed under the
  key ring in `runs.input` (store/functions.py). Event data may hold
  anything, a secret value a publisher put there included: it never lies in
  the database in plaintext, and a replay's output is redacted like any run's.

`logic runs replay RUN_ID` runs the function's current version again with
that input, as a new run whose record says `replay_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store.errors import StoreError

_EVENT_FIELDS = ("id", "name", "data", "published_at", "source")
_TRIGGER_TYPES = frozenset({"event", "schedule", "manual", "ledger_change"})


@dataclass(frozen=True)
class TriggerInput:
    type: str  # event | schedule | manual | ledger_change
    event_id: str | None
    event: dict[str, Any] | None  # the `event` context part: id, name, data, published_at, source
    scheduled: dict[str, Any] | None  # scheduled_at, cron (and the schedule's window)
    ledger_change: dict[str, Any] | None  # changed_at, change_type, name, data

    def displayed(self) -> dict[str, Any]:
        """The record's `trigger` (before redaction): what a person reads about the input."""
        event, scheduled, change = self.event, self.scheduled or {}, self.ledger_change
        return {
            "type": self.type,
            "event_id": self.event_id,
            "scheduled_at": scheduled.get("scheduled_at"),
            "cron": scheduled.get("cron"),
            "event": None if event is None else {k: event.get(k) for k in ("name", "data", "source", "published_at")},
            "ledger_change": None
            if change is None
            else {k: change.get(k) for k in ("name", "change_type", "changed_at")},
        }

    def to_json(self) -> dict[str, Any]:
        """The raw input, to be sealed with the run."""
        return {
            "type": self.type,
            "event_id": self.event_id,
            "event": self.event,
            "scheduled": self.scheduled,
            "ledger_change": self.ledger_change,
        }

    @classmethod
    def from_json(cls, data: Any) -> TriggerInput:
        """The input sealed with a run; StoreError if it is not one (it was decrypted, so it
        was written by us: a bad shape is a bug or a store from a future version)."""
        if not isinstance(data, dict) or data.get("type") not in _TRIGGER_TYPES:
            raise StoreError("a run's stored input is not in a known format")
        parts = [data.get(k) for k in ("event", "scheduled", "ledger_change")]
        if not all(p is None or isinstance(p, dict) for p in parts):
            raise StoreError("a run's stored input is not in a known format")
        event, scheduled, change = parts
        if event is not None:
            event = {k: event.get(k) for k in _EVENT_FIELDS}
        event_id = data.get("event_id")
        return cls(data["type"], event_id if isinstance(event_id, str) else None, event, scheduled, change)

    @property
    def trigger(self) -> dict[str, Any]:
        """The engine's `trigger` argument for a run of this input."""
        return {"type": self.type, "event_id": self.event_id}
