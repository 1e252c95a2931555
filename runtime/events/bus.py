"""The event bus: publish = commit the event and a delivery per matching target.

Functions match the event name exactly, integrations by prefix, both only
within the publisher's owner (a user's events never reach another tenant).
A publish from outside (the API, the CLI) is committed by the group-commit
writer (publish_writer.py) with the others waiting at that moment: inside
one batch the targets of an (owner, name) are looked up once, the queue's
counters read once per owner, all rows inserted together at the end and the
doorbell rung once, after the commit. Events that runs and webhooks publish
join their own transaction instead.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from runtime.events.doorbell import Doorbell
from runtime.events.publish_writer import PublishWriter
from runtime.events.rules import LEDGER_SOURCE, check_event, fires_webhooks, undelivered
from runtime.events.streams import EVENTS, Item, Streams
from store.errors import QueueFull
from store.events import EventBatch
from store.ledgers import LedgerChange
from store.store import Store

Targets = list[tuple[str, str]]  # (kind, id) of each function or integration an event reaches


@dataclass
class _Batch:
    """What the publishes of one writer batch share."""

    events: EventBatch
    targets: dict[tuple[str, str, bool], Targets] = field(default_factory=dict)  # (owner, name, webhooks)
    deliveries: Counter[str] = field(default_factory=Counter)  # per owner, rung after the commit


class EventBus:
    """Publishes events durably, rings the delivery threads' doorbell and, once committed,
    hands each event to the owner's live streams."""

    def __init__(self, store: Store, streams: Streams | None = None):
        self.store = store
        self.settings = store.settings
        self.streams = streams
        self.wake = Doorbell()  # rung once per delivery created, so a delivery thread starts at once
        self.writer = PublishWriter(  # group commit: outside publishes, delivery runs
            store,
            queue_max=self.settings.publish_queue_max,
            batch_max=self.settings.publish_batch_max,
            scope=self.batch,
        )
        self._batch: _Batch | None = None  # the writer's open batch (only the writer thread uses it)

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
        """Check the event (check_event), then commit it with its deliveries in the writer's
        next batch; returns once that batch has committed. For callers outside a transaction."""
        check_event(name, data, self.settings, from_hook=from_hook)
        accepted: dict[str, Any] = self.writer.run(
            lambda: self.publish_checked(owner, name, data, source=source, depth=depth, check_capacity=check_capacity)
        )
        return accepted

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
        batch = self._batch if self.writer.in_batch() else None
        with store.transaction():
            targets = self._targets(owner, name, fires_webhooks(name, source), batch)
            events = store.events if batch is None else batch.events
            accepted = events.add_event(owner, name, data, source, depth, targets, check_capacity=check_capacity)
            if self.streams is not None:
                streams, item = self.streams, stream_item(accepted, data, source)
                store.after_commit(lambda: streams.publish(owner, item))
            if batch is None:
                self._ring_after_commit(accepted["deliveries"], owner)
            else:
                batch.deliveries[owner] += accepted["deliveries"]
        return accepted

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writer's scope around one batch, inside its transaction (see the docstring)."""
        batch = self._batch = _Batch(self.store.events.batch())
        try:
            yield
            batch.events.write()
            for owner, deliveries in batch.deliveries.items():
                self._ring_after_commit(deliveries, owner)
        finally:
            self._batch = None

    def _targets(self, owner: str, name: str, webhooks: bool, batch: _Batch | None) -> Targets:
        key = (owner, name, webhooks)
        if batch is not None and key in batch.targets:
            return batch.targets[key]
        store = self.store
        targets = [("function", fid) for fid in store.functions.for_event(owner, name)]
        if webhooks:
            targets += [("integration", iid) for iid in store.integrations.for_event(owner, name)]
        if batch is not None:
            batch.targets[key] = targets
        return targets

    def _ring_after_commit(self, deliveries: int, owner: str) -> None:
        """Wake delivery threads once the deliveries are committed (a thread woken before
        would find nothing to claim and sleep until the poll)."""
        if deliveries:
            wake = self.wake
            self.store.after_commit(lambda: wake.ring(deliveries, owner))

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
        batch = self._batch if self.writer.in_batch() else None  # a run's commit in the writer's batch
        with store.transaction():
            events = store.events if batch is None else batch.events
            events.add_event(
                change.owner,
                f"ledger/{change.name}",
                data,
                LEDGER_SOURCE,
                depth,
                targets,
                check_capacity=check_capacity,
            )
            if batch is None:
                self._ring_after_commit(len(targets), change.owner)
            else:
                batch.deliveries[change.owner] += len(targets)
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
