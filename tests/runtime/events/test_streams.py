"""The live streams' hub: owners apart, prefixes, bounded buffers, the per-owner cap, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from runtime.events.streams import EVENTS, RUNS, Item, Streams, TooManyStreams


def item(name: str, n: int = 0, topic: str = EVENTS) -> Item:
    return Item(topic, name, {"name": name, "n": n})


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_reader_gets_its_owners_matching_items_in_order_and_nothing_else():
    async def scenario():
        streams = Streams(per_owner=5, buffer_items=100)
        reader = streams.open("user:a", EVENTS, lambda name: name.startswith("temp"))
        streams.publish("user:b", item("temp", 1))  # another owner
        streams.publish("user:a", item("other", 2))  # another prefix
        streams.publish("user:a", item("temp", 3, topic=RUNS))  # another topic
        for n in range(4, 7):
            streams.publish("user:a", item(f"temp/{n}", n))
        got = await reader.next(timeout=1)
        return [i.body["n"] for i in got]

    assert run(scenario()) == [4, 5, 6]


def test_publishing_from_other_threads_wakes_the_reader():
    async def scenario():
        streams = Streams(per_owner=5, buffer_items=1000)
        reader = streams.open("user:a", EVENTS, lambda name: True)
        threads = [
            threading.Thread(target=lambda t=t: [streams.publish("user:a", item(f"t{t}", n)) for n in range(100)])
            for t in range(3)
        ]
        for thread in threads:
            thread.start()
        seen: list[Item] = []
        while len(seen) < 300:
            batch = await reader.next(timeout=5)
            assert batch is not None
            seen.extend(batch)
        for thread in threads:
            thread.join()
        by_thread = {f"t{t}": [i.body["n"] for i in seen if i.key == f"t{t}"] for t in range(3)}
        return by_thread

    assert all(ns == list(range(100)) for ns in run(scenario()).values())  # each publisher's order kept


def test_a_reader_that_falls_behind_is_dropped_and_publishing_goes_on():
    async def scenario():
        streams = Streams(per_owner=5, buffer_items=10)
        slow = streams.open("user:a", EVENTS, lambda name: True)
        keeping_up = streams.open("user:a", EVENTS, lambda name: True)
        for n in range(10):
            streams.publish("user:a", item("e", n))
        first = await keeping_up.next(timeout=1)
        for n in range(10, 20):  # past the slow reader's 10: it is dropped, the other is not
            streams.publish("user:a", item("e", n))
        second = await keeping_up.next(timeout=1)
        return slow.dropped, await slow.next(timeout=0.01), len(first) + len(second)

    dropped, after, delivered = run(scenario())
    assert dropped and after is None and delivered == 20


def test_an_owner_may_hold_only_its_share_of_streams_and_a_closed_one_frees_its_place():
    async def scenario():
        streams = Streams(per_owner=2, buffer_items=10)
        a1 = streams.open("user:a", EVENTS, lambda name: True)
        streams.open("user:a", RUNS, lambda key: True)
        with pytest.raises(TooManyStreams) as refused:
            streams.open("user:a", EVENTS, lambda name: True)
        streams.open("user:b", EVENTS, lambda name: True)  # another owner is not affected
        streams.close(a1)
        streams.open("user:a", EVENTS, lambda name: True)
        return refused.value.status, streams.open_count("user:a"), streams.open_count("user:b")

    assert run(scenario()) == (429, 2, 1)


def test_end_all_ends_every_stream_at_once():
    async def scenario():
        streams = Streams(per_owner=5, buffer_items=10)
        readers = [streams.open(f"user:{n}", EVENTS, lambda name: True) for n in range(3)]
        waiting = [asyncio.create_task(r.next(timeout=30)) for r in readers]
        await asyncio.sleep(0)
        streams.end_all()
        return await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)

    assert run(scenario()) == [None, None, None]


def test_a_quiet_stream_returns_an_empty_batch_for_a_keep_alive():
    async def scenario():
        streams = Streams(per_owner=5, buffer_items=10)
        return await streams.open("user:a", EVENTS, lambda name: True).next(timeout=0.01)

    assert run(scenario()) == []
