"""What the live streams cost a publish: the bus without streams, with streams nobody
reads, and with three readers draining on their own event loop (the API's SSE readers)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path

from runtime.events.bus import EventBus
from runtime.events.streams import EVENTS, Streams
from store import Store
from store.settings import Settings

from .harness import Peer, Report, interleave, stats


class _Readers:
    """Three readers of one owner's events, drained by a loop in its own thread."""

    def __init__(self, streams: Streams, owner: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.received = 0

        async def open_and_drain() -> None:
            readers = [streams.open(owner, EVENTS, lambda name: True) for _ in range(3)]

            async def drain(reader) -> None:
                while (items := await reader.next(timeout=1.0)) is not None:
                    self.received += len(items)

            for reader in readers:
                self.loop.create_task(drain(reader))

        asyncio.run_coroutine_threadsafe(open_and_drain(), self.loop).result(timeout=5)

    def close(self, streams: Streams) -> None:
        streams.end_all()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def run(report: Report, quick: bool) -> None:
    section = report.section("streams", "9. A publish with live streams: none, nobody reading, three readers")
    home = Path(tempfile.mkdtemp(prefix="bench-streams-")) / "home"
    store = None
    readers = None
    try:
        store, init = Store.initialize(Settings(home=home, master_key=None))
        owner = init.admin.owner
        quiet = Streams(per_owner=10, buffer_items=100_000)
        busy = Streams(per_owner=10, buffer_items=100_000)
        readers = _Readers(busy, owner)
        buses = {
            "no_streams": EventBus(store),
            "nobody_reading": EventBus(store, quiet),
            "three_readers": EventBus(store, busy),
        }

        def publish(bus: EventBus):
            return lambda: bus.publish_checked(
                owner, "bench", "data", source="user:bench", depth=0, check_capacity=False
            )

        peers = [Peer(name, publish(bus), inner=20, samples=5 if quick else 15) for name, bus in buses.items()]
        rounds = interleave(peers, 2 if quick else 5)
        labels = {
            "no_streams": "publish (commit event), no live streams at all",
            "nobody_reading": "publish with the streams hub, no reader open",
            "three_readers": "publish with three readers of that owner's events",
        }
        for name, samples in rounds.items():
            section.figure(name, "us", stats(samples, 1e6), label=labels[name])
        for name in ("nobody_reading", "three_readers"):
            section.ratio(
                f"{name}_over_no_streams",
                section.value(name),
                section.value("no_streams"),
                meaning=f"{labels[name]} / {labels['no_streams']}",
            )
        section.note(f"events the three readers received in all: {readers.received:,}")
    finally:
        if readers is not None:
            readers.close(busy)
        if store is not None:
            store.close()
        shutil.rmtree(home.parent, ignore_errors=True)
