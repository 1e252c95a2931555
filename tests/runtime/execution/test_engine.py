"""Promise 4 through the engine and the real worker pool: a run that loops,
exhausts memory, floods its output, publishes too much or chains events
forever ends with its own status and a clear error, and the next run (and
any run beside it) carries on."""

from __future__ import annotations

import threading
import time

import pytest

from runtime.manifest import files_from_json
from tests.support import runtime_service

TIMEOUT_S = 1.0
LOG_MAX = 2048
EVENTS_MAX = 5
CHAIN_MAX = 3
EVENT_DATA_MAX = 4096
LOOP = "def main(event):\n    while True:\n        pass\n"
QUICK = "def main(event):\n    return 'quick'\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(
        tmp_path_factory,
        "limits",
        workers=2,
        runs_in_flight_per_owner=2,
        run_timeout_s=TIMEOUT_S,
        worker_memory_mb=128,
        log_max_bytes=LOG_MAX,
        events_per_run_max=EVENTS_MAX,
        chain_depth_max=CHAIN_MAX,
        event_data_max_bytes=EVENT_DATA_MAX,
    )
    try:
        yield service, service.actor()
    finally:
        service.close()


def deploy(env, name: str, source: str, **manifest):
    service, actor = env
    return service.deploy_function(actor, files_from_json({"name": name, "source": source, **manifest}))


def run(env, name: str, **kwargs) -> dict:
    service, actor = env
    return service.execute_function(actor, name, **kwargs)


def test_an_infinite_loop_times_out_and_the_next_run_succeeds(env):
    deploy(env, "looper", LOOP)
    deploy(env, "quick", QUICK)
    started = time.monotonic()
    record = run(env, "looper")
    elapsed = time.monotonic() - started
    assert record["status"] == "timeout"
    # The wall clock's message (the CPU limit's backstop says "CPU time limit"), and its duration:
    # at least the limit, and far below the 30 s default a limit that was not applied would give.
    assert record["error"] == {
        "type": "TimeoutError",
        "traceback": "",
        "message": f"the run exceeded its time limit of {TIMEOUT_S:g} s",
    }
    assert record["duration_ms"] >= TIMEOUT_S * 900
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S * 3 + 6, elapsed
    assert run(env, "quick")["status"] == "success"  # same owner: a fresh worker
    assert run(env, "looper", event_name="again")["status"] == "timeout"  # and the loop again, cleanly


def test_other_runs_carry_on_beside_a_looping_one(env, monkeypatch):
    service, _actor = env
    deploy(env, "looper2", LOOP)
    deploy(env, "quick2", QUICK)
    in_flight: list[str] = []
    beside: dict[str, list[str]] = {}  # per run: the runs in flight when it got its worker
    looping_has_a_worker = threading.Event()
    real_run = service.pool.run

    def run_and_tell(job, on_secret, on_start=None, on_ledger=None):
        name = job.context["function_info"]["name"]

        def started():
            if on_start is not None:
                on_start()
            beside[name] = [other for other in in_flight if other != name]
            looping_has_a_worker.set()

        in_flight.append(name)
        try:
            return real_run(job, on_secret, started, on_ledger)
        finally:
            in_flight.remove(name)

    monkeypatch.setattr(service.pool, "run", run_and_tell)
    results = {}
    looping = threading.Thread(target=lambda: results.setdefault("loop", run(env, "looper2")))
    looping.start()
    assert looping_has_a_worker.wait(10)
    quick = run(env, "quick2")
    assert quick["status"] == "success" and quick["result"] == "quick"
    assert beside["quick2"] == ["looper2"]  # it ran beside the loop, not queued behind it
    looping.join(10)
    assert results["loop"]["status"] == "timeout"


@pytest.mark.parametrize("manifest_timeout, shown", [(0.3, "0.3"), (100, f"{TIMEOUT_S:g}")])
def test_a_manifest_may_only_lower_the_time_limit(env, manifest_timeout, shown):
    deploy(env, f"lowered-{shown}", LOOP, limits={"timeout_s": manifest_timeout})
    limit = min(manifest_timeout, TIMEOUT_S)
    started = time.monotonic()
    record = run(env, f"lowered-{shown}")
    elapsed = time.monotonic() - started
    assert record["status"] == "timeout"
    assert record["error"]["message"] == f"the run exceeded its time limit of {shown} s"  # the wall clock's
    assert record["duration_ms"] >= limit * 900
    assert elapsed < limit * 3 + 6, elapsed  # generous on a loaded machine, far below the 30 s default


@pytest.mark.parametrize(
    "source",
    [
        "def main(event):\n    keep = []\n    while True:\n        keep.append('x' * 1000000)\n",
        "def main(event):\n    return len(bytearray(1024 * 1024 * 1024))\n",
    ],
    ids=["growing", "one-huge-allocation"],
)
def test_a_memory_blow_up_is_memory_exceeded(env, source):
    name = f"hog-{len(source)}"
    deploy(env, name, source)
    deploy(env, "quick-after-hog", QUICK)
    record = run(env, name)
    assert record["status"] == "memory_exceeded", record["error"]
    assert record["error"]["type"] == "MemoryError"
    assert run(env, "quick-after-hog")["status"] == "success"


def test_a_manifest_memory_limit_below_the_operators(env):
    # 60 MiB fits in the operator's 128 MiB address space but not in the function's own 64.
    source = "def main(event):\n    data = bytearray(60 * 1024 * 1024)\n    return len(data)\n"
    deploy(env, "capped", source, limits={"memory_mb": 64})
    deploy(env, "uncapped", source)
    assert run(env, "capped")["status"] == "memory_exceeded"
    assert run(env, "uncapped")["result"] == 60 * 1024 * 1024


def test_publishing_past_the_event_limit_is_a_clear_error(env):
    source = (
        "import logic\n"
        "def main(event):\n"
        "    for i in range(EVENTS):\n"
        "        logic.publish('many', str(i))\n"
        "    return 'done'\n"
    )
    deploy(env, "publisher-ok", source.replace("EVENTS", str(EVENTS_MAX)))
    fine = run(env, "publisher-ok")
    assert fine["status"] == "success" and len(fine["events_published"]) == EVENTS_MAX

    deploy(env, "publisher", source.replace("EVENTS", str(EVENTS_MAX + 3)))
    record = run(env, "publisher")
    assert record["status"] == "error"
    assert record["error"]["type"] == "PublishLimitError"
    assert f"{EVENTS_MAX}" in record["error"]["message"] and "events" in record["error"]["message"]
    assert 'File "publisher.py", line 4, in main' in record["error"]["traceback"]
    assert [e["data"] for e in record["events_published"]] == [str(i) for i in range(EVENTS_MAX)]


def test_event_data_over_the_operators_limit_is_a_clear_error(env):
    """A lowered limit reaches the sandbox: the publish fails in user code, the worker is not killed."""
    source = "import logic\ndef main(event):\n    logic.publish('big', 'x' * SIZE)\n    return 'sent'\n"
    deploy(env, "big-ok", source.replace("SIZE", str(EVENT_DATA_MAX)))
    assert run(env, "big-ok")["status"] == "success"
    deploy(env, "big", source.replace("SIZE", str(EVENT_DATA_MAX + 1)))
    record = run(env, "big")
    assert record["status"] == "error", record["error"]
    assert record["error"]["message"] == (
        f"event data is {EVENT_DATA_MAX + 1} bytes; the limit is {EVENT_DATA_MAX} bytes"
    )
    assert record["events_published"] == []


def test_a_log_flood_is_truncated_with_the_marker(env):
    source = (
        "def main(event):\n    for i in range(100000):\n        print('line', i, 'y' * 50)\n    return 'survived'\n"
    )
    deploy(env, "flood", source)
    record = run(env, "flood")
    assert record["status"] == "success" and record["result"] == "survived"
    messages = [line["message"] for line in record["logs"]]
    assert messages[-1] == f"[log truncated: limit of {LOG_MAX} bytes reached]"
    assert record["logs"][-1]["level"] == "warning"
    assert sum(len(m.encode()) + 1 for m in messages[:-1]) == LOG_MAX  # bytes and newlines
    assert messages[0] == "line 0 " + "y" * 50
    # One huge line is cut at the limit too.
    deploy(env, "one-line", "def main(event):\n    print('z' * 100000)\n")
    cut = run(env, "one-line")
    assert [len(line["message"]) for line in cut["logs"][:-1]] == [LOG_MAX - 1]  # and its newline
    assert cut["logs"][-1]["message"].startswith("[log truncated")


def test_chained_events_stop_at_the_depth_limit(env):
    service, actor = env
    source = (
        "import logic\n"
        "def main(event):\n"
        "    n = int(event.data)\n"
        "    logic.publish('chain-ping', str(n + 1))\n"
        "    return n\n"
    )
    deploy(env, "chainer", source, triggers=[{"type": "event", "event_name": "chain-ping"}])
    service.publish_event(actor, "chain-ping", "0")
    delivered = service.dispatcher().drain(max_steps=50)
    assert delivered == CHAIN_MAX + 1  # depths 0..CHAIN_MAX, then nothing more is queued
    runs = service.function_runs(actor, "chainer")[::-1]  # oldest first
    assert [r["result"] for r in runs] == list(range(CHAIN_MAX + 1))
    assert [r["status"] for r in runs] == ["success"] * CHAIN_MAX + ["error"]
    last = runs[-1]
    assert last["error"]["type"] == "EventError"
    assert last["error"]["message"] == (
        f"event chain depth limit of {CHAIN_MAX} reached: the 1 event(s) this run published were not delivered"
    )
    assert service.store.events.db.one("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")[0] == 0
