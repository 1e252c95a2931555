"""The claim loop, PostgreSQL beside SQLite (issue 14, "Measure").

One real `Store` per backend (SQLite in a temporary LOGIC_HOME; PostgreSQL in a
throwaway cluster, tests/pg_cluster.py), the same queue: deliveries spread over a few
owners, committed before the clock starts. Then `claimers` threads each loop
`store.events.claim(limit=1)` and `finish` of what they took, until the queue is empty:
claims/s is deliveries over the wall time of the drain. The backends take turns round by
round (a fresh queue each time), so a burst of noise on the machine hits both alike.
PostgreSQL's own CPU per claim (its processes' utime+stime from /proc) is reported too.

No run happens here: this is the queue's cost alone, the ceiling a node's delivery
threads meet before any function runs. Without PostgreSQL installed, its half is skipped
with a note.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from store import Settings, Store
from store.clock import iso, utcnow

from .harness import Report, rate_stats
from .scale import cpu_seconds, postmaster_pid

OWNERS = 8  # the claim takes turns over owners: a few, as a shared server has
TARGETS_PER_EVENT = 10


def fill(store: Store, deliveries: int) -> None:
    """`deliveries` pending deliveries over OWNERS owners, in one transaction."""
    events = store.events
    with store.transaction():
        for n in range(deliveries // TARGETS_PER_EVENT):
            owner = f"user:claims{n % OWNERS}"
            targets = [("function", f"fn-{n % OWNERS}-{t}") for t in range(TARGETS_PER_EVENT)]
            events.add_event(owner, "bench-claims", None, "bench", 0, targets, check_capacity=False)


def drain(store: Store, claimers: int, expected: int, limit_s: float) -> float:
    """Claims/s of `claimers` threads taking one delivery at a time and finishing it."""
    events = store.events
    done = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(claimers + 1)
    stop_at = time.monotonic() + limit_s

    def loop() -> None:
        start.wait()
        taken = 0
        try:
            while time.monotonic() < stop_at:
                now = utcnow()
                claimed = events.claim(iso(now), iso(now + timedelta(seconds=60)), 1)
                if not claimed:
                    if not claimed.more:
                        break
                    continue
                for delivery in claimed:
                    events.finish(delivery.id, run_id=f"bench-{delivery.id}", token=delivery.token)
                    taken += 1
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)
        with lock:
            done[0] += taken

    threads = [threading.Thread(target=loop, name=f"bench-claimer-{i}", daemon=True) for i in range(claimers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(limit_s + 60)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if done[0] != expected:
        raise RuntimeError(f"the claimers finished {done[0]} of {expected} deliveries (duplicates or losses)")
    return done[0] / elapsed


class Backend:
    """A store on one backend, emptied and refilled each round."""

    def __init__(self, name: str, settings: Settings, reset: Callable[[], None], pg_pid: int | None = None):
        self.name = name
        self.settings = settings
        self.reset = reset
        self.pg_pid = pg_pid

    def round(self, deliveries: int, claimers: int, limit_s: float) -> tuple[float, float | None]:
        """(claims/s, PostgreSQL CPU ms per claim or None)."""
        self.reset()
        store, _ = Store.initialize(self.settings)
        try:
            fill(store, deliveries)
            cpu0 = cpu_seconds(self.pg_pid) if self.pg_pid else None
            try:
                rate = drain(store, claimers, deliveries, limit_s)
            except RuntimeError as exc:
                raise RuntimeError(f"{self.name}: {exc}") from None
            cpu = None if cpu0 is None else (cpu_seconds(self.pg_pid or 0) - cpu0) * 1000 / deliveries
        finally:
            store.close()
        return rate, cpu


def run(report: Report, quick: bool) -> None:
    section = report.section("claims", "Claim loop: PostgreSQL beside SQLite (store.events.claim/finish)")
    deliveries = 1_000 if quick else 10_000
    claimers = 4
    rounds = 1 if quick else 3
    limit_s = 60.0 if quick else 300.0
    workdir = Path(tempfile.mkdtemp(prefix="logic-bench-claims-"))
    cluster = None
    try:
        from tests.pg_cluster import pg_bin, start_cluster

        sqlite_home = workdir / "sqlite"
        backends = [Backend("sqlite", Settings(home=sqlite_home), lambda: shutil.rmtree(sqlite_home, True))]
        if pg_bin() is None:
            section.note("PostgreSQL is not installed (tests.pg_cluster.pg_bin() is None): its half is skipped")
        else:
            cluster = start_cluster()
            counter = [0]
            pg_home = workdir / "pg"

            def fresh_database() -> None:
                counter[0] += 1
                url = cluster.create_database(f"claims{counter[0]}")
                shutil.rmtree(pg_home, ignore_errors=True)
                pg.settings = Settings(home=pg_home, database_url=SecretStr(url))

            pg = Backend("postgresql", Settings(home=pg_home), fresh_database, postmaster_pid(cluster.data))
            backends.append(pg)

        rates: dict[str, list[float]] = {b.name: [] for b in backends}
        pg_cpu: list[float] = []
        for r in range(rounds):
            for backend in backends[r % len(backends) :] + backends[: r % len(backends)]:
                rate, cpu = backend.round(deliveries, claimers, limit_s)
                rates[backend.name].append(rate)
                if cpu is not None:
                    pg_cpu.append(cpu)
        label = f"{deliveries:,} deliveries, {OWNERS} owners, {claimers} claimer threads"
        section.figure("sqlite_claims_per_s", "claims/s", rate_stats(rates["sqlite"]), label=f"SQLite: {label}")
        if "postgresql" in rates:
            section.figure(
                "postgresql_claims_per_s", "claims/s", rate_stats(rates["postgresql"]), label=f"PostgreSQL: {label}"
            )
            section.figure(
                "postgresql_cpu_ms_per_claim",
                "ms",
                rate_stats(pg_cpu),
                label="PostgreSQL processes' CPU per claim+finish",
            )
            section.ratio(
                "postgresql_vs_sqlite",
                section.value("postgresql_claims_per_s"),
                section.value("sqlite_claims_per_s"),
                meaning="PostgreSQL claims/s over SQLite's, same run (it buys reach, not speed)",
            )
        section.note(
            "one process, threads: both backends pay the same GIL; SQLite serialises writers on "
            "its file lock, PostgreSQL claims with FOR UPDATE SKIP LOCKED over loopback"
        )
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
