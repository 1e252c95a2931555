"""Live streams across processes: a reader sees what every process on the database commits.

A stream's reader lives in the process that answers its HTTP request (streams.py), and
the items it carries (events, run records, webhook logs) are committed wherever the
work is done: a `logic serve --role worker` process beside `--role api`, another node
on PostgreSQL, `logic publish` from a shell. Each process hands its own items to its own
readers at once; here it also shares a reference to each with the other processes that
have readers (SQLite: the `<database>-streams/` bell of store/process_doorbell.py;
PostgreSQL: a NOTIFY, debounced), and a process with readers reads each referenced
item back from the store, for those of its readers that want it.

A reference is only a pointer, {"t": topic, "o": owner, "k": key, "i": id}. The item
is read from the store by its id and offered only if the stored row's owner and key
are the ones named (threat: whoever may write to the bell or NOTIFY names another
owner's item, or makes one up: at most an item that owner already has is offered again,
to that owner's readers). What is read is what local readers get: the event, the run
record as stored (redacted), the log as stored (masked).

References travel in numbered messages, batched by each sender's thread. A message that
was lost (a listener's queue full past the sender's wait, references dropped at a
sender with 10,000 waiting, a LISTEN connection made again) would make a reader miss
items without knowing: instead every reader here is ended, as one that falls behind is,
and reconnects from "now" (the number left out, or the reconnect, says so).

Costs: nothing while no other process has readers (SQLite: the bell's listing, kept for a
second; PostgreSQL: a look at who LISTENs, once a second); a process with readers reads an
item only when one of its readers wants it. Limits: a reader opened less than about a
second ago may miss what other processes commit (their listing or look), and items from
several processes arrive in the order they arrive.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

from runtime.events.bus import stream_item
from runtime.events.streams import EVENTS, RUNS, WEBHOOK_LOGS, Item, Streams
from store.errors import LogicError, StoreError
from store.store import Store

log = logging.getLogger("logic.streams")

SENDERS_KEPT = 1_000  # the senders whose last message number is kept


class StreamFeed:
    """Shares this process's stream items with other processes, and feeds this process's
    readers with theirs while it has readers (Streams calls `share` and `update`)."""

    def __init__(self, store: Store, streams: Streams):
        self.store = store
        self.streams = streams
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None  # None: not listening
        self._numbers: dict[str, int] = {}  # per sender: its last message's number

    def share(self, owner: str, item: Item) -> None:
        """After the commit of `item` (from any thread)."""
        self.store.db.share_stream_item(lambda: _reference(owner, item))

    def _lost(self) -> None:
        log.warning("event=stream_items_lost (every live stream here ends; readers reconnect)")
        self.streams.end_all()

    def update(self) -> None:
        """Listen while this process has readers, and only then."""
        with self._lock:
            reading = self.streams.reading()
            if reading and self._stop is None:
                self._numbers.clear()  # a new listener: what came before it is not its gap
                stop = threading.Event()
                if self.store.db.listen_stream_items(self._received, self._lost, stop) is not None:
                    self._stop = stop
            elif not reading and self._stop is not None:
                self._stop.set()
                self._stop = None

    def close(self) -> None:
        with self._lock:
            if self._stop is not None:
                self._stop.set()
                self._stop = None

    def _received(self, message: bytes) -> None:
        header, *lines = message.split(b"\n")
        sender, _, number_text = header.decode("utf-8", "replace").rpartition(" ")
        if not sender or not number_text.isascii() or not number_text.isdigit() or len(number_text) > 18:
            return  # not one of ours
        number = int(number_text)
        last = self._numbers.get(sender)
        if last is not None and number != last + 1:
            self._lost()
        if len(self._numbers) >= SENDERS_KEPT and sender not in self._numbers:
            self._numbers.clear()  # processes come and go: forget the old ones (a gap may go unseen once)
        self._numbers[sender] = number
        for line in lines:
            self._offer(line)

    def _offer(self, line: bytes) -> None:
        try:
            ref = json.loads(line)
            topic, owner, key, ident = ref["t"], ref["o"], ref["k"], ref["i"]
        except (ValueError, TypeError, KeyError, RecursionError):
            return  # not one of ours
        if not all(isinstance(v, str) for v in (topic, owner, key)) or not _plausible(topic, ident):
            return
        if not self.streams.wanted(owner, topic, key):
            return
        try:
            found = self._read(topic, ident)
        except StoreError as exc:  # busy or unreachable: the item cannot be read, so it is lost
            log.warning("event=stream_item_unread topic=%s error=%s", topic, exc.message)
            self._lost()
            return
        except LogicError as exc:  # gone meanwhile (pruned, deleted): nothing to show
            log.debug("event=stream_item_skipped topic=%s error=%s", topic, exc.message)
            return
        except Exception:  # whatever a reference makes the store do, the listener goes on
            log.exception("event=stream_item_unreadable topic=%s", topic)
            return
        if found is not None and found[0] == owner and found[1].key == key:
            self.streams.offer(owner, found[1])

    def _read(self, topic: str, ident: Any) -> tuple[str, Item] | None:
        """(owner, item) as the committing process made it."""
        store = self.store
        if topic == EVENTS:
            event = store.events.event(ident)
            return event["owner"], stream_item(event, event["data"], event["source"])
        if topic == RUNS:
            record = store.functions.run(ident)
            fn = store.functions.get_by_id(record["function_id"])
            return fn.owner, Item(RUNS, fn.id, record)
        if topic == WEBHOOK_LOGS:
            integration_id, body = store.integrations.log(ident)
            return store.integrations.get_by_id(integration_id).owner, Item(WEBHOOK_LOGS, integration_id, body)
        return None


_HEX_ID = re.compile(r"[0-9a-f]{32}")  # event and run ids (uuid4().hex)


def _plausible(topic: str, ident: Any) -> bool:
    """Whether `ident` can be an id of `topic`'s items: anything else is never read."""
    if topic in (EVENTS, RUNS):
        return isinstance(ident, str) and _HEX_ID.fullmatch(ident) is not None
    if topic == WEBHOOK_LOGS:  # an integer key (bool is an int too)
        return type(ident) is int and 0 < ident < 2**63
    return False


def _reference(owner: str, item: Item) -> str:
    return json.dumps({"t": item.topic, "o": owner, "k": item.key, "i": item.body["id"]})
