"""The claim loop, PostgreSQL beside SQLite (issue 14, "Measure").

One real `Store` per backend (SQLite in a temporary LOGIC_HOME; PostgreSQL in a
throwaway cluster, tests/pg_cluster.py), the same queue: deliveries spread over a few
owners, committed before the clock starts. Then `claimers` threads each loop
`store.events.claim(limit=1)` and `finish` of what they took, until the queue is empty:
claims/s is deliveries over the wall time of the drain. The backends take turns round by
round (a fresh queue each time), so a burst of noise on the machine hits both alike.
PostgreSQL's own CPU per claim (its processes' utime+stime from /proc) is reported too.

Before and after, in one run: BENCH_CLAIMS_BASELINES="label=/path/to/tree,..." names older
code trees (`git worktree add /tmp/claims-base HEAD~1`). Each gets PostgreSQL rounds of its
own, taking turns with this tree's; every PostgreSQL round (this tree's too, then) runs in a
process started in its tree, with that tree's store and its own fill and drain below.

No run happens here: this is the queue's cost alone, the ceiling a node's delivery
threads meet before any function runs. Without PostgreSQL installed, its half is skipped
with a note.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from store import Settings, Store
from store.clock import iso, utcnow

from .harness import Report, baselines, rate_stats
from .scale import cpu_seconds, postmaster_pid

BASELINES = "BENCH_CLAIMS_BASELINES"
ROOT = Path(__file__).resolve().parents[1]
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


# A PostgreSQL round in a process started in a code tree (its store, fill and drain).
_ROUND = """
import json, sys
from pydantic import SecretStr
from benchmarks.claims import drain, fill
from benchmarks.scale import cpu_seconds
from store import Settings, Store
home, url, deliveries, claimers, limit_s, pg_pid = sys.argv[1:]
store, _ = Store.initialize(Settings(home=home, database_url=SecretStr(url)))
try:
    fill(store, int(deliveries))
    cpu0 = cpu_seconds(int(pg_pid))
    rate = drain(store, int(claimers), int(deliveries), float(limit_s))
    print(json.dumps([rate, (cpu_seconds(int(pg_pid)) - cpu0) * 1000 / int(deliveries)]))
finally:
    store.close()
"""


class Backend:
    """A store on one backend, emptied and refilled each round; in this process, or (`code`)
    in one started in that code tree."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        reset: Callable[[], None],
        pg_pid: int | None = None,
        code: Path | None = None,
    ):
        self.name = name
        self.settings = settings
        self.reset = reset
        self.pg_pid = pg_pid
        self.code = code

    def round(self, deliveries: int, claimers: int, limit_s: float) -> tuple[float, float | None]:
        """(claims/s, PostgreSQL CPU ms per claim or None)."""
        self.reset()
        if self.code is not None:
            return self._round_in(self.code, deliveries, claimers, limit_s)
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

    def _round_in(self, code: Path, deliveries: int, claimers: int, limit_s: float) -> tuple[float, float | None]:
        url = self.settings.database_url
        assert url is not None and self.pg_pid is not None  # PostgreSQL rounds only
        args = [str(self.settings.home), url.get_secret_value(), str(deliveries), str(claimers), str(limit_s)]
        done = subprocess.run(
            [sys.executable, "-c", _ROUND, *args, str(self.pg_pid)],
            cwd=code,
            env={**os.environ, "PYTHONPATH": str(code)},
            capture_output=True,
            text=True,
            timeout=limit_s + 120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: the round in {code} failed: {done.stderr.strip()[-1500:]}")
        rate, cpu = json.loads(done.stdout.strip().splitlines()[-1])
        return float(rate), float(cpu)


def _postgres(cluster: Any, workdir: Path, label: str, code: Path | None) -> Backend:
    """A PostgreSQL backend with a fresh database each round (`label`: a baseline's)."""
    name = f"postgresql_{label}" if label else "postgresql"
    home = workdir / name
    counter = [0]

    def fresh_database() -> None:
        counter[0] += 1
        url = cluster.create_database(f"claims_{label or 'current'}{counter[0]}")
        shutil.rmtree(home, ignore_errors=True)
        backend.settings = Settings(home=home, database_url=SecretStr(url))

    backend = Backend(name, Settings(home=home), fresh_database, postmaster_pid(cluster.data), code)
    return backend


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
        trees = baselines(BASELINES)
        if pg_bin() is None:
            trees = []
            section.note("PostgreSQL is not installed (tests.pg_cluster.pg_bin() is None): its half is skipped")
        else:
            cluster = start_cluster()
            # With baselines, this tree's rounds run in a process of their own too: alike.
            for label, code in [("", ROOT if trees else None), *trees]:
                backends.append(_postgres(cluster, workdir, label, code))

        rates: dict[str, list[float]] = {b.name: [] for b in backends}
        pg_cpu: dict[str, list[float]] = {b.name: [] for b in backends}
        for r in range(rounds):
            for backend in backends[r % len(backends) :] + backends[: r % len(backends)]:
                rate, cpu = backend.round(deliveries, claimers, limit_s)
                rates[backend.name].append(rate)
                if cpu is not None:
                    pg_cpu[backend.name].append(cpu)
        label = f"{deliveries:,} deliveries, {OWNERS} owners, {claimers} claimer threads"
        section.figure("sqlite_claims_per_s", "claims/s", rate_stats(rates["sqlite"]), label=f"SQLite: {label}")
        if "postgresql" in rates:
            section.figure(
                "postgresql_claims_per_s", "claims/s", rate_stats(rates["postgresql"]), label=f"PostgreSQL: {label}"
            )
            section.figure(
                "postgresql_cpu_ms_per_claim",
                "ms",
                rate_stats(pg_cpu["postgresql"]),
                label="PostgreSQL processes' CPU per claim+finish",
            )
            section.ratio(
                "postgresql_vs_sqlite",
                section.value("postgresql_claims_per_s"),
                section.value("sqlite_claims_per_s"),
                meaning="PostgreSQL claims/s over SQLite's, same run (it buys reach, not speed)",
            )
        for label, _ in trees:
            name = f"postgresql_{label}"
            section.figure(f"{name}_claims_per_s", "claims/s", rate_stats(rates[name]), label=f"PostgreSQL [{label}]")
            section.figure(
                f"{name}_cpu_ms_per_claim", "ms", rate_stats(pg_cpu[name]), label=f"PostgreSQL CPU per claim [{label}]"
            )
            section.ratio(
                f"postgresql_vs_{label}",
                section.value("postgresql_claims_per_s"),
                section.value(f"{name}_claims_per_s"),
                meaning=f"PostgreSQL claims/s, this code / {label}, same run",
            )
            section.ratio(
                f"postgresql_cpu_vs_{label}",
                section.value("postgresql_cpu_ms_per_claim"),
                section.value(f"{name}_cpu_ms_per_claim"),
                meaning=f"PostgreSQL CPU per claim+finish, this code / {label}",
            )
        section.note(
            "one process, threads: both backends pay the same GIL; SQLite serialises writers on "
            "its file lock, PostgreSQL claims with FOR UPDATE SKIP LOCKED over loopback"
        )
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
