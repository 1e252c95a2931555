"""Workload 8: a noisy neighbour. Owner A floods; owner B publishes one event at a time.

In process, at the default settings (workers, delivery threads, per-owner caps):
the Service, the real worker pool and the dispatcher threads of `logic serve`.

- A alone: A's throughput draining a backlog of quick runs (the single-owner figure),
  and A beside B: the same backlog with B publishing beside it (rounds interleaved).
- B alone: B publishes one event, waits until its run is recorded, again.
- A hostile: A keeps its own queue full with slow runs (CPU loops to their time limit),
  CPU-burning runs, quick runs and runs reading large secret sets (a different subset
  each time), and fires test runs past its quota; B publishes as in "B alone".

Reported: B's publish -> run recorded p50/p99 alone and beside A, how often B was
refused (429), A's runs/s alone and beside B, and this process's RSS peak over its idle
size against the documented bound (redactor cache + one run's masking per worker).
"""

from __future__ import annotations

import random
import threading
import time

from store.errors import QueueFull, TooManyRequests

from .harness import Report, at_least, at_most, rate_stats, stats
from .lab import Lab

QUICK = "def main(event, secrets):\n    return len(secrets.API_KEY)\n"
SLOW = "def main(event):\n    while True:\n        pass\n"
BURN = "def main(event):\n    n = 0\n    for i in range(200000):\n        n += i\n    return n\n"
BIG = (
    "def main(event, secrets):\n    skip = int(event.data)\n    got = 0\n"
    "    for i in range(12):\n        if i != skip:\n            try:\n"
    "                got += len(secrets['BIG_%d' % i])\n            except Exception:\n"
    "                break\n    return got\n"
)
MS = 1e3


class RssPeak:
    """This process's RSS, sampled every 20 ms in a thread."""

    def __init__(self):
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def _one(value: float) -> dict:
    """A figure measured once (a count, a peak)."""
    return {"p50": value, "p99": None, "n": 1}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def run(report: Report, quick: bool) -> None:
    from runtime.manifest import files_from_json

    section = report.section("noisy", "8. Noisy neighbour: owner A floods, owner B publishes one event at a time")
    lab = Lab()
    settings = lab.settings
    service = lab.service
    a, b = lab.actor, lab.new_user()
    rng = random.Random(8)
    nasty = "\x01\x02\"'\\"
    for i in range(12):
        service.create_secret(a, f"BIG_{i}", "".join(rng.choice(nasty) for _ in range(65536)))
    lab.deploy("quick", QUICK, event_name="a-quick")
    service.deploy_function(
        a,
        files_from_json(
            {
                "name": "slow",
                "source": SLOW,
                "limits": {"timeout_s": 1},
                "triggers": [{"type": "event", "event_name": "a-slow"}],
            }
        ),
    )
    lab.deploy("burn", BURN, secrets=(), event_name="a-burn")
    lab.deploy("big", BIG, secrets=[f"BIG_{i}" for i in range(12)], event_name="a-big")
    lab.deploy("b-quick", QUICK, event_name="b-quick", actor=b)
    dispatcher = service.dispatcher(threads=settings.delivery_threads, poll_s=settings.dispatcher_poll_s)
    dispatcher.start()
    rss = RssPeak()
    samples = 12 if quick else 40
    backlog = 500 if quick else 2000
    a_alone, a_beside = [], []
    refused = {"a_publish": 0, "a_test_run": 0}
    try:
        _a_throughput(service, a, backlog // 5)  # warm: every worker started, code cached
        for _round in range(2 if quick else 3):
            a_alone.append(_a_throughput(service, a, backlog))
            stop_b = threading.Event()
            ticker = threading.Thread(target=_b_until, args=(service, b, stop_b), daemon=True)
            ticker.start()
            try:
                a_beside.append(_a_throughput(service, a, backlog))
            finally:
                stop_b.set()
                ticker.join()
        b_alone = _b_latencies(service, b, samples)

        # Last: A's full queue of slow runs would take minutes to drain, and need not.
        stop = threading.Event()
        flood = threading.Thread(target=_flood, args=(service, a, stop, refused), daemon=True)
        testers = [
            threading.Thread(target=_test_runs, args=(service, a, stop, refused), daemon=True)
            for _ in range(2 * settings.owner_runs_max)
        ]
        flood.start()
        for t in testers:
            t.start()
        time.sleep(0.5)  # A's queue fills
        try:
            b_noisy, b_refused = _b_latencies(service, b, samples, count_refusals=True)
        finally:
            stop.set()
            flood.join()
            for t in testers:
                t.join()
    finally:
        grown = rss.stop()
        dispatcher.stop(timeout=30)
        lab.close()

    section.figure("b_alone", "ms", stats(b_alone, MS), label="B alone: publish -> run recorded")
    section.figure(
        "b_beside_hostile_a",
        "ms",
        stats(b_noisy, MS),
        label="B while A floods (slow, CPU, quick, large secret sets, test runs)",
    )
    section.figure(
        "b_refused",
        "publishes",
        _one(b_refused),
        label="B's publishes refused while A floods",
        target=at_most(0, "never"),
    )
    section.figure(
        "a_refused",
        "publishes",
        _one(refused["a_publish"]),
        label="A's own publishes refused (its quota of pending deliveries)",
    )
    section.figure(
        "a_test_runs_refused",
        "test runs",
        _one(refused["a_test_run"]),
        label="A's test runs refused past its quota (429)",
    )
    section.figure("a_alone", "runs/s", rate_stats(a_alone), label="A alone: quick events published and delivered")
    section.figure("a_beside_b", "runs/s", rate_stats(a_beside), label="A's quick events with B publishing beside it")
    bound = settings.redactor_cache_mb + settings.workers * settings.masking_bytes_per_run_max / 2**20
    section.figure(
        "rss_growth",
        "MB",
        _one(round(grown, 1)),
        label=f"server RSS peak over its idle size (bound: {bound:.0f} MB)",
        target=at_most(bound, "under"),
    )
    section.ratio(
        "b_noisy_over_alone",
        section.value("b_beside_hostile_a"),
        section.value("b_alone"),
        meaning="B's p50 beside a hostile A / B alone",
        target=at_most(2, "<= 2x"),
    )
    section.ratio(
        "a_beside_over_alone",
        section.value("a_beside_b"),
        section.value("a_alone"),
        meaning="A's runs/s beside B / A alone",
        target=at_least(0.9, ">= 0.9"),
    )
    section.note(
        f"defaults: {settings.workers} workers, {settings.delivery_threads} delivery threads, "
        f"{settings.owner_runs_max} runs in flight per owner, "
        f"{settings.queue_max_pending_per_owner} pending deliveries per owner; in process, no HTTP."
    )


def _wait_done(service, event_id: str, limit_s: float = 60.0, poll_s: float = 0.001) -> None:
    stop = time.monotonic() + limit_s
    while time.monotonic() < stop:
        row = service.store.db.one("SELECT status FROM deliveries WHERE event_id = ?", (event_id,))
        if row is not None and row[0] in ("done", "failed"):
            return
        time.sleep(poll_s)
    raise RuntimeError("B's run was not recorded within a minute")


def _b_latencies(service, b, samples: int, *, count_refusals: bool = False):
    times, refused = [], 0
    while len(times) < samples:
        start = time.perf_counter()
        try:
            accepted = service.publish_event(b, "b-quick", "{}")
        except QueueFull:
            if not count_refusals:
                raise
            refused += 1
            continue
        _wait_done(service, accepted["id"])
        times.append(time.perf_counter() - start)
        time.sleep(0.01)
    return (times, refused) if count_refusals else times


def _b_until(service, b, stop: threading.Event) -> None:
    while not stop.is_set():
        _wait_done(service, service.publish_event(b, "b-quick", "{}")["id"], poll_s=0.005)
        stop.wait(0.01)


def _a_throughput(service, a, backlog: int) -> float:
    """Runs/s from A's first publish of `backlog` events until all are delivered (the
    threads deliver while A publishes: timing the drain alone would miss most of it)."""
    _drain(service, 120)
    start = time.perf_counter()
    for _ in range(backlog):
        while True:
            try:
                service.publish_event(a, "a-quick", "{}")
                break
            except QueueFull:
                time.sleep(0.01)
    _drain(service, 300)
    return backlog / (time.perf_counter() - start)


def _drain(service, limit_s: float) -> None:
    stop = time.monotonic() + limit_s
    while service.store.events.open_deliveries() and time.monotonic() < stop:
        time.sleep(0.005)


def _flood(service, a, stop: threading.Event, refused: dict) -> None:
    names = ["a-slow", "a-burn", "a-quick", "a-big"]
    i = 0
    while not stop.is_set():
        i += 1
        try:
            service.publish_event(a, names[i % len(names)], str(i % 12))
        except QueueFull:
            refused["a_publish"] += 1
            stop.wait(0.005)


def _test_runs(service, a, stop: threading.Event, refused: dict) -> None:
    from runtime.manifest import files_from_json

    files = files_from_json({"name": "a-test", "source": SLOW, "limits": {"timeout_s": 1}})
    while not stop.is_set():
        try:
            service.execute_function(a, files, event_name="x")
        except TooManyRequests:
            refused["a_test_run"] += 1
            stop.wait(0.05)
