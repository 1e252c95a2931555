"""Live streams: what was just committed (events, run records, webhook logs), pushed to
the readers of one owner as it happens -- the server-sent event streams of the API.

Publishing never waits for a reader: `publish` appends to each matching reader's
bounded buffer and rings it; a reader whose buffer is full is dropped (its stream
ends, it reconnects and carries on from "now"). Each owner may hold at most
`per_owner` open streams (threat: one tenant opening streams until the server's
memory or file descriptors run out). A stream starts at the moment it is opened: it
carries what is committed after that, nothing older.

Thread-safe: publishers are delivery threads and the event loop; readers are asyncio
tasks, woken with `call_soon_threadsafe` at most once per batch. What other processes
commit reaches these readers through the `feed` (stream_feed.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from store.errors import TooManyRequests

if TYPE_CHECKING:
    from runtime.events.stream_feed import StreamFeed

# Topics: what a stream carries.
EVENTS = "events"  # {"name", "data", "published_at", "ttl", "coreid", "id"}
RUNS = "runs"  # a run record (redacted, as stored)
WEBHOOK_LOGS = "webhook_logs"  # an integration log entry (masked, as stored)


@dataclass(frozen=True)
class Item:
    topic: str
    key: str  # the event name, the function id, the integration id: what readers filter on
    body: dict[str, Any]


class TooManyStreams(TooManyRequests):
    """429: the owner already holds its share of open streams."""


class Reader:
    """One open stream: a bounded buffer filled by publishers, drained by one asyncio task."""

    def __init__(self, owner: str, topic: str, match: Callable[[str], bool], capacity: int):
        self.owner, self.topic, self.match, self.capacity = owner, topic, match, capacity
        self.dropped = False
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._rung = False

    def offer(self, item: Item) -> None:
        """From any thread; never blocks on the reader."""
        with self._lock:
            if self.dropped:
                return
            if len(self._items) >= self.capacity:
                self.dropped = True
                self._items.clear()
            else:
                self._items.append(item)
            if self._rung:
                return
            self._rung = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the reader's loop has closed: nobody is listening
            pass

    def end(self) -> None:
        """End the stream (the server is stopping): the reader's next call returns None."""
        with self._lock:
            self.dropped = True
            self._items.clear()
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass

    def _wake(self) -> None:
        self._ready.set()

    async def next(self, timeout: float) -> list[Item] | None:
        """The items published since the last call (maybe none after `timeout`: time for a
        keep-alive); None once the reader was dropped for falling behind."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass
        with self._lock:
            self._ready.clear()
            self._rung = False
            if self.dropped:
                return None
            items = list(self._items)
            self._items.clear()
        return items


class Streams:
    """The open readers by owner; `publish` hands an item to the readers that match it."""

    def __init__(self, *, per_owner: int, buffer_items: int):
        self.per_owner = per_owner
        self.buffer_items = buffer_items
        self._readers: dict[str, set[Reader]] = {}
        self._lock = threading.Lock()
        self.feed: StreamFeed | None = None  # other processes' items in, this one's out

    def open(self, owner: str, topic: str, match: Callable[[str], bool]) -> Reader:
        """A reader for the owner's `topic` items whose key `match`es (call from the event loop)."""
        reader = Reader(owner, topic, match, self.buffer_items)
        with self._lock:
            mine = self._readers.setdefault(owner, set())
            if len(mine) >= self.per_owner:
                raise TooManyStreams(
                    f"{owner} already has {self.per_owner} open streams (LOGIC_STREAMS_PER_OWNER): close one first"
                )
            mine.add(reader)
        if self.feed is not None:
            self.feed.update()
        return reader

    def close(self, reader: Reader) -> None:
        with self._lock:
            mine = self._readers.get(reader.owner)
            if mine is not None:
                mine.discard(reader)
                if not mine:
                    del self._readers[reader.owner]
        if self.feed is not None:
            self.feed.update()

    def end_all(self) -> None:
        """End every open stream (at shutdown: an endless response would hold the server open)."""
        with self._lock:
            readers = [r for mine in self._readers.values() for r in mine]
        for reader in readers:
            reader.end()

    def open_count(self, owner: str) -> int:
        with self._lock:
            return len(self._readers.get(owner, ()))

    def reading(self) -> bool:
        """Whether any stream is open here."""
        return bool(self._readers)

    def wanted(self, owner: str, topic: str, key: str) -> bool:
        """Whether a reader here would take an item of `owner`'s `topic` with `key`."""
        with self._lock:
            return any(r.topic == topic and r.match(key) for r in self._readers.get(owner, ()))

    def publish(self, owner: str, item: Item) -> None:
        """Give `item`, just committed here, to the owner's readers of its topic that match,
        and share it with other processes' readers (cheap when none listen)."""
        self.offer(owner, item)
        if self.feed is not None:
            self.feed.share(owner, item)

    def offer(self, owner: str, item: Item) -> None:
        """Give `item` to this process's readers only (the feed's way in)."""
        readers = self._readers.get(owner)
        if not readers:
            return
        with self._lock:
            targets = [r for r in readers if r.topic == item.topic and r.match(item.key)]
        for reader in targets:
            reader.offer(item)
