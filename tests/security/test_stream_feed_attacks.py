"""Attacks on the live-stream feed between processes (runtime/events/stream_feed.py).

Whoever may write the SQLite bell's folder (`<database>-streams/`) or NOTIFY on
PostgreSQL's `logic_streams` channel (any login to the database: NOTIFY needs no
privilege) can send the feed anything. The promises attacked here:

1. one owner never sees another owner's item through the feed, whatever a reference names;
2. no secret value reaches a stream through the feed (what is read back is the stored,
   redacted record);
3. a stranger's messages never kill the listener or stop later legitimate items;
4. a flood (of junk, of made-up senders, of references) keeps the receiver's memory
   bounded and never blocks a publisher.

Two Service objects on one database stand for two processes (the API with the readers,
the worker doing the work), as in tests/runtime/events/test_stream_feed.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time

import pytest

from runtime.events import stream_feed
from runtime.events.streams import EVENTS, RUNS, WEBHOOK_LOGS
from runtime.manifest import files_from_json
from store import Settings, process_doorbell
from tests.conftest import BACKENDS
from tests.stream_feed_support import ARRIVES_S, api_and_worker, listening, send_datagrams, sockets_of, until

__all__ = ["api_and_worker"]  # a fixture, used by name

ALIVE_S = 6.0  # after an attack, a legitimate item still arrives within this


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def drain(reader, quiet_s: float = 0.6) -> list:
    """What the reader holds now and within `quiet_s` (None if it was dropped)."""
    items: list = []
    deadline = time.monotonic() + quiet_s
    while time.monotonic() < deadline:
        got = await reader.next(timeout=0.1)
        if got is None:
            return None  # type: ignore[return-value]
        items.extend(got)
    return items


_forged = iter(range(1, 10**9))


def forge(api, settings: Settings, backend: str, *messages: bytes) -> None:
    """Send `messages` as a stranger would: datagrams into the API's socket (SQLite), or a
    NOTIFY on logic_streams from a connection of its own (PostgreSQL: text only)."""
    if backend == "sqlite":
        folder, names = sockets_of(api)
        assert len(names) == 1, names
        send_datagrams(folder, names[0], *messages)
        return
    import psycopg

    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
        for message in messages:
            conn.execute("SELECT pg_notify('logic_streams', %s)", (message.decode("utf-8"),))


def numbered(*lines: str | bytes) -> bytes:
    """A message of a made-up sender of its own (never a gap: number 1 of a new sender)."""
    body = [line.encode() if isinstance(line, str) else line for line in lines]
    return b"\n".join([f"mallory-{next(_forged)} 1".encode(), *body])


def ref(topic: str, owner, key, ident) -> str:
    return json.dumps({"t": topic, "o": owner, "k": key, "i": ident})


# 1. another owner's items -------------------------------------------------------------


def test_references_naming_another_owners_events_runs_logs_and_org_events_offer_nothing(
    api_and_worker, settings, backend, receiver
):
    """Bob's event, his org's event, his run and his webhook log, named in references that
    claim they are Alice's (with Alice's own keys, with Bob's keys), and in type-confused
    references: Alice's readers of every topic get none of them."""
    api, worker = api_and_worker
    alice = api.actor()
    bob = worker.create_user(alice, "bob")
    worker.create_org(bob, "acme")  # alice is not a member
    echo = {"source": "def main(event):\n    return event.data\n", "triggers": [{"type": "event", "event_name": "go"}]}
    fn_a = worker.deploy_function(alice, files_from_json({"name": "alice-fn", **echo}))
    fn_b = worker.deploy_function(bob, files_from_json({"name": "bob-fn", **echo}))
    hook_a = worker.create_integration(alice, {"name": "a-hook", "event": "go", "url": receiver.url + "/a"})
    hook_b = worker.create_integration(bob, {"name": "b-hook", "event": "go", "url": receiver.url + "/b"})

    bobs_event = worker.publish_event(bob, "go", "bob's private data")
    orgs_event = worker.publish_event(bob, "org-plans", "acme's private data", org="acme")
    worker.dispatcher(threads=1).drain()
    (bobs_run,) = worker.store.functions.runs(fn_b.id)
    bobs_run_id = bobs_run["id"]
    bobs_log_id = worker.store.integrations.logs(hook_b.id)[0]["id"]
    assert worker.store.integrations.logs(hook_b.id)  # the attack names real rows

    forged_refs = [
        # Bob's items claimed as Alice's, with Bob's key and with Alice's own keys.
        ref(EVENTS, alice.owner, "go", bobs_event["id"]),
        ref(EVENTS, alice.owner, "org-plans", orgs_event["id"]),
        ref(RUNS, alice.owner, fn_a.id, bobs_run_id),
        ref(RUNS, alice.owner, fn_b.id, bobs_run_id),
        ref(WEBHOOK_LOGS, alice.owner, hook_a.id, bobs_log_id),
        ref(WEBHOOK_LOGS, alice.owner, hook_b.id, bobs_log_id),
        # The right owner but the wrong topic: a run id as an event, a log id as a run.
        ref(EVENTS, alice.owner, "go", bobs_run_id),
        ref(RUNS, alice.owner, fn_a.id, str(bobs_log_id)),
        # Type confusion: ids, owners and keys that are not what they should be.
        ref(WEBHOOK_LOGS, alice.owner, hook_a.id, True),
        ref(WEBHOOK_LOGS, alice.owner, hook_a.id, float(bobs_log_id)),
        ref(WEBHOOK_LOGS, alice.owner, hook_a.id, str(bobs_log_id)),
        ref(WEBHOOK_LOGS, alice.owner, hook_a.id, [bobs_log_id]),
        ref(WEBHOOK_LOGS, alice.owner, hook_a.id, {"id": bobs_log_id}),
        ref(RUNS, alice.owner, fn_a.id, [bobs_run_id]),
        ref(RUNS, alice.owner, fn_a.id, {"$ne": None}),
        ref(EVENTS, [alice.owner], "go", bobs_event["id"]),
        ref(EVENTS, {"owner": alice.owner}, "go", bobs_event["id"]),
        ref(EVENTS, alice.owner, ["go"], bobs_event["id"]),
        ref(EVENTS, alice.owner, None, bobs_event["id"]),
        ref(EVENTS, alice.owner, "go", None),
        ref(EVENTS, alice.owner, "go", "' OR 1=1 --"),
        ref(RUNS, alice.owner, fn_a.id, "%"),
        json.dumps({"t": EVENTS, "o": alice.owner, "k": "go", "i": bobs_event["id"], "o ": bob.owner}),
        json.dumps([EVENTS, alice.owner, "go", bobs_event["id"]]),
        json.dumps(bobs_event["id"]),
        "null",
    ]

    async def scenario():
        events = api.streams.open(alice.owner, EVENTS, lambda name: True)
        runs = api.streams.open(alice.owner, RUNS, lambda key: True)  # wider than the API's: any key
        logs = api.streams.open(alice.owner, WEBHOOK_LOGS, lambda key: True)
        await listening(api, worker, alice)
        forge(api, settings, backend, numbered(*forged_refs), *(numbered(r) for r in forged_refs))
        worker.publish_event(alice, "after", "alice's")  # sent after the forgeries, read after them
        got_events = await until(events, lambda i: any(x.body["name"] == "after" for x in i))
        return got_events, await drain(runs), await drain(logs)

    got_events, got_runs, got_logs = asyncio.run(scenario())
    assert [i.body["name"] for i in got_events if i.body["name"] != "probe"] == ["after"]
    assert got_runs == [] and got_logs == []
    everything = json.dumps([i.body for i in got_events + got_runs + got_logs])
    assert "private data" not in everything and bobs_run_id not in everything


def test_a_reference_to_an_org_event_reaches_only_the_orgs_readers(api_and_worker, settings, backend):
    """The same event id named for a user outside the org, and for the org: only the org's
    readers (its owner string, as `owner_for` makes it) may be offered it."""
    api, worker = api_and_worker
    alice = api.actor()
    bob = worker.create_user(alice, "bob")
    worker.create_org(bob, "acme")
    org_owner = worker.owner_for(bob, "acme")

    async def scenario():
        alices = api.streams.open(alice.owner, EVENTS, lambda name: True)
        bobs = api.streams.open(bob.owner, EVENTS, lambda name: True)
        orgs = api.streams.open(org_owner, EVENTS, lambda name: name == "org-plans")
        await listening(api, worker, alice)
        # Committed while the API reads: Acme's readers get it once, from the feed.
        event = worker.publish_event(bob, "org-plans", "acme only", org="acme")
        first = await until(orgs, bool)
        forge(
            api,
            settings,
            backend,
            numbered(
                ref(EVENTS, alice.owner, "org-plans", event["id"]),
                ref(EVENTS, bob.owner, "org-plans", event["id"]),  # a member, but not as himself
            ),
        )
        worker.publish_event(alice, "after", None)
        worker.publish_event(bob, "after", None)
        a = await until(alices, lambda i: any(x.body["name"] == "after" for x in i))
        b = await until(bobs, lambda i: any(x.body["name"] == "after" for x in i))
        return first, a, b

    first, a, b = asyncio.run(scenario())
    assert [i.body["data"] for i in first] == ["acme only"]
    assert [i.body["name"] for i in a if i.body["name"] != "probe"] == ["after"]
    assert [i.body["name"] for i in b] == ["after"]


# 2. secrets --------------------------------------------------------------------------

SECRET = "sk_live_FeedLeak_9q8w7e6r5t4y3u2i1o0p"

LEAKY = """
import logic

def main(event, secrets):
    key = secrets.API_KEY
    print("the key is", key)
    logic.publish("leaked", "k=" + key)
    return {"key": key, "reversed": key[::-1] and "x", "data": event.data}
"""


def test_no_secret_reaches_a_stream_through_the_feed(api_and_worker, settings, backend, receiver):
    """A run that prints, publishes and returns its secret, and a webhook whose URL and
    header carry one: what the API's readers get from the worker is the stored, redacted
    record, and holds the secret nowhere."""
    api, worker = api_and_worker
    alice = api.actor()
    worker.create_secret(alice, "API_KEY", SECRET)
    fn = worker.deploy_function(
        alice,
        files_from_json(
            {
                "name": "leaky",
                "source": LEAKY,
                "secrets": ["API_KEY"],
                "triggers": [{"type": "event", "event_name": "go"}],
            }
        ),
    )
    hook = worker.create_integration(
        alice,
        {
            "name": "hook",
            "event": "go",
            "url": receiver.url + "/in?key={{{API_KEY}}}",
            "headers": {"Authorization": "Bearer {{{API_KEY}}}"},
            "secrets": ["API_KEY"],
        },
    )

    async def scenario():
        events = api.streams.open(alice.owner, EVENTS, lambda name: True)
        runs = api.streams.open(alice.owner, RUNS, lambda key: key == fn.id)
        logs = api.streams.open(alice.owner, WEBHOOK_LOGS, lambda key: key == hook.id)
        await listening(api, worker, alice)
        worker.publish_event(alice, "go", "hello")
        worker.dispatcher(threads=1).drain()
        got_runs = await until(runs, bool)
        got_logs = await until(logs, bool)
        got_events = await until(events, lambda i: any(x.body["name"] == "leaked" for x in i), timeout_s=3.0)
        return got_events, got_runs, got_logs

    got_events, got_runs, got_logs = asyncio.run(scenario())
    (run,) = got_runs
    assert run.body == worker.store.functions.run(run.body["id"])  # the stored record, nothing more
    assert run.body["secrets_accessed"] == ["API_KEY"]  # the run did read it
    (hook_log,) = got_logs
    for item in got_events + got_runs + got_logs:
        text = json.dumps(item.body)
        assert SECRET not in text and SECRET[::-1] not in text, (item.topic, text[:400])
    assert "FeedLeak" not in json.dumps(hook_log.body)


# 3. the listener survives ------------------------------------------------------------

CRAFTED = {
    # a log id SQLite cannot bind (OverflowError, not a LogicError)
    "log_id_past_int64": (WEBHOOK_LOGS, 2**70),
    "log_id_below_int64": (WEBHOOK_LOGS, -(2**70)),
    # an id with a lone surrogate: valid JSON ("\ud800"), not encodable as UTF-8
    "event_id_lone_surrogate": (EVENTS, "\ud800"),
    "run_id_lone_surrogate": (RUNS, "x\udfff"),
    # NUL: PostgreSQL text cannot hold it
    "event_id_nul": (EVENTS, "a\u0000b"),
    "run_id_nul": (RUNS, "\u0000"),
    "event_id_long": (EVENTS, "e" * 3500),
}


@pytest.mark.parametrize("crafted", sorted(CRAFTED))
def test_a_crafted_id_does_not_kill_the_listener(api_and_worker, settings, backend, crafted):
    """Found by this attack, fixed: the feed caught only LogicError from the store read, but
    SQLite raises OverflowError for an int past 64 bits and both drivers UnicodeEncodeError
    for a lone surrogate; the exception ended the listener thread while the feed believed
    it listened, so no other process's item reached this one's readers. Now an id that
    cannot be one is never read, any exception of a read is logged, and a message can
    never end a listener (SQLite's bell, PostgreSQL's LISTEN loop)."""
    api, worker = api_and_worker
    alice = api.actor()
    topic, ident = CRAFTED[crafted]

    async def scenario():
        mine = api.streams.open(alice.owner, EVENTS, lambda name: name in ("after", "any-key"))
        also = {t: api.streams.open(alice.owner, t, lambda key: True) for t in (RUNS, WEBHOOK_LOGS)}
        await listening(api, worker, alice)
        forge(api, settings, backend, numbered(ref(topic, alice.owner, "any-key", ident)))
        worker.publish_event(alice, "after", None)
        got = await until(mine, bool, timeout_s=ALIVE_S)
        for reader in also.values():
            api.streams.close(reader)
        return got

    assert [i.body["name"] for i in asyncio.run(scenario())] == ["after"], "the listener died"


JUNK = [
    b"",
    b"\n",
    b"\n" * 3000,
    b"\xff\xfe\x00" * 300,
    b"\x00" * 4096,
    b"x" * 10_000,  # past MESSAGE_MAX: arrives cut
    b" 1\n{}",  # no sender
    b"mallory \n{}",  # no number
    b"mallory -1\n{}",
    b"mallory 1e5\n{}",
    b"mallory \xd9\xa3\n{}",  # an Arabic-Indic digit: isdigit, not ASCII
    b"mallory " + b"9" * 19 + b"\n{}",  # past 18 digits
    b"\xff\xff\xff 1\n{}",  # a sender name that is not UTF-8
    b"mallory-j 1\n" + b"[" * 4000,  # deep nesting (RecursionError)
    b"mallory-k 1\n" + b'{"t":' * 800,
    b"mallory-l 1\n" + b"\xc3\x28" * 100,  # invalid UTF-8 in a reference
    b"mallory-m 1\n" + b'{"t": "events", "o": "x", "k": "y", "i": 1e999}',
    b"mallory-n 1\n" + b'{"t": "events", "o": "x", "k": "y", "i": NaN}',
    b"mallory-o 1\n" + b'{"t": "events", "o": "x", "k": "y", "i": "' + b"1" * 4000 + b'"}',
    b"mallory-p 1\n" + b"1" * 4050,  # a number of 4,050 digits (int's digit limit is 4,300)
]


def test_junk_messages_do_not_stop_later_items(api_and_worker, settings, backend):
    """Junk of every shape (for PostgreSQL, what a NOTIFY payload can carry: text, under
    8,000 bytes): the reader is not ended and the next real item arrives."""
    api, worker = api_and_worker
    alice = api.actor()
    junk = JUNK if backend == "sqlite" else [m for m in JUNK if _notifiable(m)]

    async def scenario():
        mine = api.streams.open(alice.owner, EVENTS, lambda name: True)
        await listening(api, worker, alice)
        forge(api, settings, backend, *junk)
        worker.publish_event(alice, "after", None)
        return await until(mine, lambda i: any(x.body["name"] == "after" for x in i), timeout_s=ALIVE_S)

    items = asyncio.run(scenario())
    assert [i.body["name"] for i in items if i.body["name"] != "probe"] == ["after"]


def _notifiable(message: bytes) -> bool:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "\x00" not in text and len(message) < 7_900


def test_after_a_forged_gap_a_reconnecting_reader_gets_later_items(api_and_worker, settings, backend):
    """A forged gap (a made-up sender's 1 then 3) ends this process's readers, by design
    (anyone who may send can do it, every time); a reader opened again still gets what
    is committed next, and the forger's number does not make the real sender look lost."""
    api, worker = api_and_worker
    alice = api.actor()

    async def scenario():
        first = api.streams.open(alice.owner, EVENTS, lambda name: True)
        await listening(api, worker, alice)
        forge(api, settings, backend, b"mallory-gap 1\n", b"mallory-gap 3\n")
        ended = await drain(first, quiet_s=3.0) is None
        api.streams.close(first)
        second = api.streams.open(alice.owner, EVENTS, lambda name: True)
        await listening(api, worker, alice)
        worker.publish_event(alice, "after", None)
        got = await until(second, lambda i: any(x.body["name"] == "after" for x in i), timeout_s=ALIVE_S)
        return ended, got

    ended, got = asyncio.run(scenario())
    assert ended
    assert "after" in [i.body["name"] for i in got]


# 4. bounded resources ----------------------------------------------------------------


@pytest.mark.sqlite_only  # datagrams are cheap to flood with; the bound is the feed's, not the transport's
def test_a_flood_of_made_up_senders_keeps_the_receivers_numbers_bounded(api_and_worker):
    """3,000 senders, each with a long name: the listener keeps at most SENDERS_KEPT of
    them (memory bounded), and still takes the next real item."""
    api, worker = api_and_worker
    alice = api.actor()
    feed = api.streams.feed

    async def scenario():
        mine = api.streams.open(alice.owner, EVENTS, lambda name: name == "after")
        await listening(api, worker, alice)
        folder, (name,) = sockets_of(api)
        long = "m" * 3000
        flood = [f"{long}-{n} 1".encode() for n in range(3 * stream_feed.SENDERS_KEPT)]
        sizes = []

        def sample() -> None:
            while not done.is_set():
                sizes.append(len(feed._numbers))
                time.sleep(0.005)

        done = threading.Event()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            await asyncio.to_thread(send_datagrams, folder, name, *flood)
            worker.publish_event(alice, "after", None)
            got = await until(mine, bool, timeout_s=ALIVE_S)
        finally:
            done.set()
            sampler.join(5)
        return got, sizes

    got, sizes = asyncio.run(scenario())
    assert [i.body["name"] for i in got] == ["after"]
    assert stream_feed.SENDERS_KEPT <= 10_000  # a bound worth the name
    assert max(sizes) <= stream_feed.SENDERS_KEPT
    assert len(feed._numbers) <= stream_feed.SENDERS_KEPT
    assert sum(len(k) for k in feed._numbers) <= stream_feed.SENDERS_KEPT * process_doorbell.MESSAGE_MAX


def test_the_feed_never_keeps_more_than_senders_kept_called_directly(api_and_worker):
    """The same bound without the transport (PostgreSQL's payloads reach `_received` as is)."""
    api, _worker = api_and_worker
    feed = api.streams.feed
    assert stream_feed.SENDERS_KEPT <= 10_000
    for n in range(5 * stream_feed.SENDERS_KEPT):
        feed._received(f"sender-{n} {n}".encode())
        assert len(feed._numbers) <= stream_feed.SENDERS_KEPT


@pytest.mark.sqlite_only
def test_a_listener_that_never_reads_neither_blocks_publishers_nor_grows_the_queue(tmp_path, monkeypatch):
    """A listener (a stranger's socket, a stopped process's) whose queue is full: `send`
    returns at once for 30,000 lines, and at most PENDING_MAX wait in the sender."""
    monkeypatch.setattr(process_doorbell, "LISTING_KEPT_S", 0.0)
    folder = tmp_path / "db-streams"
    stop = threading.Event()
    silent = process_doorbell.ProcessDoorbell(folder)
    blocked = threading.Event()
    assert silent.listen(lambda _m: blocked.wait(20), stop) is not None  # reads one, then never again
    bell = process_doorbell.ProcessDoorbell(folder)
    sender = process_doorbell.BatchedBell(bell)
    try:
        started = time.monotonic()
        worst = 0.0
        for n in range(30_000):
            t = time.monotonic()
            sender.send(f'{{"t": "events", "o": "x", "k": "y", "i": "{n:08d}"}}')
            worst = max(worst, time.monotonic() - t)
        took = time.monotonic() - started
        waiting = len(sender._lines)
    finally:
        blocked.set()
        stop.set()
        sender.close()
        bell.close()
        silent.close()
    assert worst < 0.1 and took < 5.0, (worst, took)
    assert waiting <= process_doorbell.PENDING_MAX


@pytest.mark.sqlite_only
def test_a_listener_that_stops_reading_does_not_hold_up_another_listeners_items(api_and_worker):
    """Found by this attack, fixed: a BatchedBell's one thread sent each message to every
    listener in turn, waiting up to SEND_WAIT_S (250 ms) for room in each full queue, so N
    sockets that never read (a stranger's, a stopped process's) delayed every message to
    everyone by N x 250 ms. Now full queues wait together until one deadline, and a
    listener that let it pass (it has lost a message, and ends its streams) is not waited
    for again. 16 silent sockets here."""
    api, worker = api_and_worker
    alice = api.actor()
    silent: list[socket.socket] = []

    async def scenario():
        mine = api.streams.open(alice.owner, EVENTS, lambda name: name.startswith("burst"))
        await listening(api, worker, alice)
        folder, _ = sockets_of(api)
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for n in range(16):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.bind(f"/proc/self/fd/{folder_fd}/zz-silent-{n}.sock")  # never read from
                silent.append(s)
        finally:
            os.close(folder_fd)
        # Fill the silent queues (10 datagrams each) and go on publishing, a little at a time.
        for n in range(40):
            worker.publish_event(alice, f"burst-{n:02d}", None)
            await asyncio.sleep(0.015)
        published_at = time.monotonic()
        got = await until(mine, lambda i: len(i) >= 40, timeout_s=ARRIVES_S)
        return got, time.monotonic() - published_at

    try:
        got, late_by = asyncio.run(scenario())
    finally:
        for s in silent:
            s.close()
    assert len(got) == 40
    assert late_by < 1.5, f"the last item arrived {late_by:.1f} s after it was committed"


@pytest.mark.postgresql_only
def test_a_login_without_privileges_cannot_stop_the_feed(api_and_worker, settings):
    """Any role that may connect to the database may LISTEN and NOTIFY on logic_streams
    (neither needs a privilege). Found by this attack, fixed (see the crafted-id test): one
    NOTIFY naming a watched owner with an id holding a lone surrogate ended the listener of
    every node with readers. Such a role still sees the references in flight (owners,
    event names, ids; never data): README tells operators to revoke CONNECT from PUBLIC."""
    import urllib.parse

    import psycopg

    api, worker = api_and_worker
    alice = api.actor()
    url = settings.database_url.get_secret_value()
    parts = urllib.parse.urlsplit(url)
    role = f"mallory_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    mallory_url = urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    try:
        with psycopg.connect(mallory_url, autocommit=True) as mallory:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mallory.execute("SELECT count(*) FROM events")  # the data is not hers...
            mallory.execute("LISTEN logic_streams")

            async def scenario():
                mine = api.streams.open(alice.owner, EVENTS, lambda name: True)
                await listening(api, worker, alice)
                # ... but the references are: an owner that someone reads, and a key.
                seen = [n.payload for n in mallory.notifies(timeout=2.0, stop_after=1)]
                assert seen, "nothing heard"
                observed = json.loads(seen[0].split("\n")[1])
                evil = ref(EVENTS, observed["o"], observed["k"], "\ud800")
                mallory.execute("SELECT pg_notify('logic_streams', %s)", ("mallory/0 1\n" + evil,))
                worker.publish_event(alice, "after", None)
                return await until(mine, lambda i: any(x.body["name"] == "after" for x in i), timeout_s=ALIVE_S)

            items = asyncio.run(scenario())
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert "after" in [i.body["name"] for i in items], "the feed's listener died"
