"""Live streams across processes (runtime/events/stream_feed.py), on both backends.

Two services on one database stand for two processes (`logic serve --role api` with the
readers, `--role worker` doing the work) or two nodes: every item the worker commits
(the event, the run record, the webhook log) reaches the API's readers as the worker's
own readers would get it; nothing of another owner's does; references anyone may send
are only pointers (forgeries: tests/security/test_stream_feed_attacks.py); a process
without readers listens to nothing; a lost message ends the readers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from runtime.events.streams import EVENTS, RUNS, WEBHOOK_LOGS
from runtime.manifest import files_from_json
from store import process_doorbell
from tests.conftest import BACKENDS
from tests.stream_feed_support import ARRIVES_S, api_and_worker, ended, listening, send_datagrams, sockets_of, until

__all__ = ["api_and_worker"]  # a fixture, used by name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_what_another_process_commits_reaches_this_ones_readers(api_and_worker, receiver):
    api, worker = api_and_worker
    alice = api.actor()
    fn = worker.deploy_function(
        alice,
        files_from_json(
            {
                "name": "echo",
                "source": "def main(event):\n    return event.data\n",
                "triggers": [{"type": "event", "event_name": "temp"}],
            }
        ),
    )
    hook = worker.create_integration(alice, {"name": "hook", "event": "temp", "url": receiver.url + "/in"})

    async def scenario():
        events = api.streams.open(alice.owner, EVENTS, lambda name: name.startswith("temp"))
        runs = api.streams.open(alice.owner, RUNS, lambda key: key == fn.id)
        logs = api.streams.open(alice.owner, WEBHOOK_LOGS, lambda key: key == hook.id)
        await listening(api, worker, alice)
        accepted = worker.publish_event(alice, "temp", "21.5")
        worker.dispatcher(threads=1).drain()
        got = {
            "event": await until(events, lambda i: any(x.body["id"] == accepted["id"] for x in i)),
            "run": await until(runs, bool),
            "log": await until(logs, bool),
        }
        return accepted, got

    accepted, got = asyncio.run(scenario())
    event = [i for i in got["event"] if i.body["id"] == accepted["id"]]
    assert len(event) == 1 and event[0].body["data"] == "21.5" and event[0].body["source"] == alice.owner
    (run,) = got["run"]
    assert run.body == worker.store.functions.run(run.body["id"])  # the record as stored
    assert run.body["result"] == "21.5" and run.body["function_id"] == fn.id
    (log,) = got["log"]
    assert log.key == hook.id and log.body["event_id"] == accepted["id"]
    assert log.body == worker.store.integrations.logs(hook.id)[0]  # the log as stored


def test_another_owners_items_never_reach_a_reader(api_and_worker):
    api, worker = api_and_worker
    alice = api.actor()
    bob = worker.create_user(alice, "bob")

    async def scenario():
        mine = api.streams.open(alice.owner, EVENTS, lambda name: True)
        await listening(api, worker, alice)
        worker.publish_event(bob, "secret-plans", "bob's")
        worker.publish_event(alice, "after", "alice's")
        return await until(mine, lambda i: any(x.body["name"] == "after" for x in i))

    items = asyncio.run(scenario())
    assert [i.body["name"] for i in items if i.body["name"] != "probe"] == ["after"]


@pytest.mark.sqlite_only  # the socket in the bell's folder is SQLite's
def test_a_process_listens_only_while_it_has_readers(api_and_worker):
    api, worker = api_and_worker
    alice = api.actor()
    folder = Path(f"{api.store.db.path}-streams")

    def sockets() -> list[str]:
        return sorted(n.name for n in folder.iterdir()) if folder.exists() else []

    worker.publish_event(alice, "nobody-reads", None)
    assert sockets() == []  # nobody has read: no folder, no socket

    async def scenario():
        reader = api.streams.open(alice.owner, EVENTS, lambda name: True)
        opened = sockets()
        api.streams.close(reader)
        deadline = time.monotonic() + ARRIVES_S
        while sockets() and time.monotonic() < deadline:  # the listener ends within its recv wait
            await asyncio.sleep(0.05)
        return opened, sockets()

    opened, after = asyncio.run(scenario())
    assert len(opened) == 1 and opened[0].endswith(".sock")
    assert after == []
    assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.postgresql_only  # SQLite's bell has no folder and no socket while nobody reads (above)
def test_on_postgresql_nobody_notifies_references_while_no_node_reads(api_and_worker, settings):
    import psycopg

    api, worker = api_and_worker
    alice = api.actor()
    url = settings.database_url.get_secret_value()
    with psycopg.connect(url, autocommit=True, application_name="a spy") as spy:
        spy.execute("LISTEN logic_streams")
        for n in range(15):  # 1.5 s: past a sender's look at who listens
            worker.publish_event(alice, "nobody-reads", str(n))
            time.sleep(0.1)
        assert list(spy.notifies(timeout=0.5)) == []

        async def scenario():
            reader = api.streams.open(alice.owner, EVENTS, lambda name: True)
            try:
                await listening(api, worker, alice)  # a reader's node LISTENs: references flow
            finally:
                api.streams.close(reader)

        asyncio.run(scenario())
        heard = [note.payload for note in spy.notifies(timeout=1.0, stop_after=1)]
    assert heard and heard[0].startswith("worker/") and '"t": "events"' in heard[0]


@pytest.mark.sqlite_only  # PostgreSQL's way to lose messages is a reconnect (below)
def test_a_lost_message_ends_every_reader_instead_of_hiding_a_gap(api_and_worker):
    api, _worker = api_and_worker
    alice = api.actor()

    async def scenario():
        reader = api.streams.open(alice.owner, EVENTS, lambda name: True)
        folder, (name,) = sockets_of(api)
        send_datagrams(folder, name, b"sender-1 1\n", b"sender-1 2\n")  # in order: nothing happens
        assert await reader.next(timeout=0.3) == []
        send_datagrams(folder, name, b"sender-1 4\n")  # number 3 never came
        return await ended(reader)

    assert asyncio.run(scenario()), "the reader went on as if nothing was lost"


@pytest.mark.sqlite_only
def test_a_sender_waits_for_room_in_a_listeners_small_queue(tmp_path):
    """A listener's queue holds ~10 datagrams (net.unix.max_dgram_qlen): 50 messages sent
    faster than it reads all arrive, numbered one after the other."""
    bell = process_doorbell.ProcessDoorbell(tmp_path / "db-streams")
    sender = process_doorbell.BatchedBell(bell)
    received: list[bytes] = []
    stop = threading.Event()
    other = process_doorbell.ProcessDoorbell(tmp_path / "db-streams")  # another process, as far as names go
    started = threading.Event()

    def slow(message: bytes) -> None:
        started.wait(10)  # reads nothing until every message is on its way
        received.append(message)

    assert other.listen(slow, stop) is not None
    try:
        lines = [f"{n:04d}" + "x" * 900 for n in range(200)]  # about four to a message
        for line in lines:
            sender.send(line)
        time.sleep(0.1)  # the sender fills the queue and waits for room
        started.set()
        deadline = time.monotonic() + ARRIVES_S
        while sum(len(m.split(b"\n")) - 1 for m in received) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        sender.close()
        bell.close()
        other.close()
    numbers = [int(m.split(b"\n")[0].rpartition(b" ")[2]) for m in received]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 10
    assert [line.decode() for m in received for line in m.split(b"\n")[1:]] == lines


@pytest.mark.postgresql_only  # SQLite's listener has no connection to lose
def test_a_listen_connection_made_again_ends_every_reader(api_and_worker, settings):
    import psycopg

    api, worker = api_and_worker
    alice = api.actor()

    async def scenario():
        reader = api.streams.open(alice.owner, EVENTS, lambda name: True)
        await listening(api, worker, alice)
        with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'logic-runtime streams-listen api%'"
            )
        return await ended(reader)

    assert asyncio.run(scenario()), "the reader went on as if nothing was lost"


@pytest.mark.sqlite_only  # the old listener's socket lingers until its recv wait ends
def test_a_reader_opened_after_the_last_one_closed_is_not_ended_for_what_it_never_had(api_and_worker):
    api, worker = api_and_worker
    alice = api.actor()

    async def scenario():
        first = api.streams.open(alice.owner, EVENTS, lambda name: True)
        await listening(api, worker, alice)
        api.streams.close(first)  # its listener stops; its socket goes within a second
        worker.publish_event(alice, "between", None)  # sent to the stopped listener: lost to everyone
        folder = Path(f"{api.store.db.path}-streams")
        deadline = time.monotonic() + ARRIVES_S
        while any(folder.iterdir()) and time.monotonic() < deadline:  # it got "between", and quit
            await asyncio.sleep(0.02)
        second = api.streams.open(alice.owner, EVENTS, lambda name: name == "after")
        worker.publish_event(alice, "after", None)
        return await until(second, bool)

    assert [i.body["name"] for i in asyncio.run(scenario())] == ["after"]


def test_an_item_the_store_cannot_read_now_ends_the_readers_and_a_deleted_one_is_skipped(api_and_worker, monkeypatch):
    from store.errors import NotFound, StoreBusy

    api, worker = api_and_worker
    alice = api.actor()
    read = api.store.events.event

    def flaky(event_id: str):
        name = read(event_id)["name"]
        if name == "gone":
            raise NotFound("event gone")
        if name == "busy":
            raise StoreBusy("the database is busy")
        return read(event_id)

    async def scenario():
        reader = api.streams.open(alice.owner, EVENTS, lambda name: name != "probe")
        await listening(api, worker, alice)
        monkeypatch.setattr(api.store.events, "event", flaky)
        worker.publish_event(alice, "gone", None)
        worker.publish_event(alice, "kept", None)
        kept = await until(reader, bool)
        worker.publish_event(alice, "busy", None)
        return kept, await ended(reader)

    kept, was_ended = asyncio.run(scenario())
    assert [i.body["name"] for i in kept] == ["kept"]  # the deleted one skipped, the stream goes on
    assert was_ended, "an item lost to a busy store was skipped without a word"
