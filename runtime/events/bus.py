"""The event bus: publish = commit the event and a delivery per matching target.

Functions match the event name exactly, integrations by prefix, both only
within the publisher's owner (a user's events never reach another tenant).
"""

from __future__ import annotations

import json
from typing import Any

from runtime.events.doorbell import Doorbell
from runtime.events.rules import LEDGER_SOURCE, check_event, fires_webhooks, undelivered
from runtime.events.streams import EVENTS, Item, Streams
from store.errors import QueueFull
from store.ledgers import LedgerChange
from store.store import Store


class EventBus:
    """Publishes events durably, rings the delivery threads' doorbell and, once committed,
    hands each event to the owner's live streams."""

    def __init__(self, store: Store, streams: Streams | None = None):
        self.store = store
        self.settings = store.settings
        self.streams = streams
        self.wake = Doorbell()  # rung once per delivery created, so a delivery thread starts at once

    def publish(
        self,
        owner: str,
        name: str,
        data: str | None,
        *,
        source: str,
        depth: int = 0,
        check_capacity: bool = True,
        from_hook: bool = False,
    ) -> dict[str, Any]:
        """Check the event (check_event), then commit it with its deliveries."""
        check_event(name, data, self.settings, from_hook=from_hook)
        return self.publish_checked(owner, name, data, source=source, depth=depth, check_capacity=check_capacity)

    def publish_from_run(self, owner: str, events: list[dict[str, Any]], depth: int, run_id: str) -> list[str]:
        """The engine's event sink, inside the run's transaction; the engine has already
        checked each event (check_event) and the chain depth. A full queue refuses events
        from runs too (else one function publishing its own trigger multiplies without
        bound); the run is kept, with an error naming what was not delivered."""
        refused = []
        for event in events:
            try:
                self.publish_checked(owner, event["name"], event.get("data"), source=f"run:{run_id}", depth=depth)
            except QueueFull as exc:
                refused.append(undelivered(event["name"], exc.message))
        return refused

    def publish_checked(
        self, owner: str, name: str, data: str | None, *, source: str, depth: int, check_capacity: bool = True
    ) -> dict[str, Any]:
        """Commit an event the caller has already checked with `check_event` (so no event
        is checked twice); joins the caller's transaction."""
        store = self.store
        with store.transaction():
            targets = [("function", fid) for fid in store.functions.for_event(owner, name)]
            if fires_webhooks(name, source):
                targets += [("integration", iid) for iid in store.integrations.for_event(owner, name)]
            accepted = store.events.add_event(owner, name, data, source, depth, targets, check_capacity=check_capacity)
            if self.streams is not None:
                streams, item = self.streams, stream_item(accepted, data, source)
                store.after_commit(lambda: streams.publish(owner, item))
        self.wake.ring(accepted["deliveries"])
        return accepted

    def ledger_changed(self, change: LedgerChange, *, depth: int, check_capacity: bool = True) -> int:
        """Deliver a committed ledger change to the functions it triggers, as a synthetic
        event (name `ledger/<name>`, source LEDGER_SOURCE, data the `ledger_change` context
        part) through the same durable queue; joins the caller's transaction. Not streamed
        and never fires a webhook. Returns how many deliveries were made."""
        store = self.store
        targets = [
            ("function", fid) for fid in store.functions.for_ledger(change.owner, change.name, change.change_type)
        ]
        if not targets:
            return 0
        data = json.dumps(
            {
                "changed_at": change.changed_at,
                "change_type": change.change_type,
                "name": change.name,
                "data": change.data,
            }
        )
        with store.transaction():
            store.events.add_event(
                change.owner,
                f"ledger/{change.name}",
                data,
                LEDGER_SOURCE,
                depth,
                targets,
                check_capacity=check_capacity,
            )
        self.wake.ring(len(targets))
        return len(targets)

    def ledger_changes_from_run(self, changes: list[LedgerChange], depth: int) -> list[str]:
        """The engine's ledger sink, inside the run's transaction (the engine checked the
        chain depth): a full queue is noted on the run, as for its events."""
        refused = []
        for change in changes:
            try:
                self.ledger_changed(change, depth=depth)
            except QueueFull as exc:
                refused.append(f"the change of ledger {change.name} triggers no function: {exc.message}")
        return refused


def stream_item(accepted: dict[str, Any], data: str | None, source: str) -> Item:
    """An event as its stream carries it: Particle's fields (`coreid` is "api", Particle's
    value for an event no device sent; `ttl` Particle's fixed 60), plus our id and source."""
    body = {
        "name": accepted["name"],
        "data": data,
        "ttl": 60,
        "published_at": accepted["published_at"],
        "coreid": "api",
        "id": accepted["id"],
        "source": source,
    }
    return Item(EVENTS, accepted["name"], body)
