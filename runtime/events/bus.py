"""The event bus: publish = commit the event and a delivery per matching target.

Functions match the event name exactly, integrations by prefix, both only
within the publisher's owner (a user's events never reach another tenant).
"""

from __future__ import annotations

from typing import Any

from runtime.events.doorbell import Doorbell
from runtime.events.rules import check_event, fires_webhooks, undelivered
from runtime.events.streams import EVENTS, Item, Streams
from store.errors import QueueFull
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
