"""The event bus: publish = commit the event and a delivery per matching target.

Functions match the event name exactly, integrations by prefix, both only
within the publisher's owner (a user's events never reach another tenant).
"""

from __future__ import annotations

from store.errors import QueueFull
from store.events import EventStore
from store.functions import FunctionStore
from store.settings import Settings

from runtime.events.doorbell import Doorbell
from runtime.events.rules import check_event


class EventBus:
    def __init__(self, settings: Settings, events: EventStore, functions: FunctionStore, integrations):
        self.settings = settings
        self.events = events
        self.functions = functions
        self.integrations = integrations
        self.wake = Doorbell()  # rung once per delivery created, so a delivery thread starts at once

    def publish(self, owner: str, name: str, data: str | None, *, source: str, depth: int = 0,
                check_capacity: bool = True, from_hook: bool = False) -> dict:
        check_event(name, data, self.settings, from_hook=from_hook)
        with self.events.db.transaction():
            targets = [("function", fid) for fid in self.functions.for_event(owner, name)]
            targets += [("integration", iid) for iid in self.integrations.for_event(owner, name)]
            accepted = self.events.add_event(owner, name, data, source, depth, targets,
                                             check_capacity=check_capacity)
        self.wake.ring(accepted["deliveries"])
        return accepted

    def publish_from_run(self, owner: str, events: list[dict], depth: int, run_id: str) -> list[str]:
        """The engine's event sink, inside the run's transaction. A full queue refuses events
        from runs too (else one function publishing its own trigger multiplies without
        bound); the run is kept, with an error naming what was not delivered."""
        refused = []
        for event in events:
            try:
                self.publish(owner, event["name"], event.get("data"), source=f"run:{run_id}", depth=depth)
            except QueueFull as exc:
                refused.append(f"event {event['name'][:64]!r} not delivered: {exc.message}")
        return refused
