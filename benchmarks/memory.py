"""Workload 7 (measured on the ingest server): memory of `logic serve` and of its workers.

RSS double-counts the pages a worker shares copy-on-write with the zygote, so
each process is also read as PSS (its fair share of shared pages) and USS
(its private pages) from /proc/PID/smaps_rollup.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass


@dataclass
class Usage:
    pid: int
    role: str  # server | zygote | worker
    rss_mb: float
    pss_mb: float | None
    uss_mb: float | None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return found


def _usage(pid: int, role: str) -> Usage | None:
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    fields[parts[0][:-1]] = int(parts[1])
    except OSError:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return Usage(pid, role, int(line.split()[1]) / 1024, None, None)
        except OSError:
            return None
        return None
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return Usage(pid, role, fields.get("Rss", 0) / 1024, fields.get("Pss", 0) / 1024, uss / 1024)


def tree(server_pid: int) -> list[Usage]:
    """The server, its zygote(s) and every worker they forked."""
    out = []
    server = _usage(server_pid, "server")
    if server:
        out.append(server)
    for child in _children(server_pid):
        zygote = _usage(child, "zygote")
        if zygote:
            out.append(zygote)
        for worker in _children(child):
            usage = _usage(worker, "worker")
            if usage:
                out.append(usage)
    return out


def totals(usages: list[Usage]) -> dict:
    workers = [u for u in usages if u.role == "worker"]
    server = next((u for u in usages if u.role == "server"), None)
    return {
        "server_rss_mb": server.rss_mb if server else None,
        "tree_rss_mb": sum(u.rss_mb for u in usages),
        "tree_pss_mb": sum(u.pss_mb or 0 for u in usages),
        "workers": len(workers),
        "worker_rss_mb": [u.rss_mb for u in workers],
        "worker_pss_mb": [u.pss_mb for u in workers if u.pss_mb is not None],
        "worker_uss_mb": [u.uss_mb for u in workers if u.uss_mb is not None],
    }


class Watch:
    """Samples the tree every `interval_s` in a thread until stopped (bounded by `max_s`)."""

    def __init__(self, server_pid: int, interval_s: float = 0.2, max_s: float = 300.0):
        self.server_pid = server_pid
        self.interval_s = interval_s
        self.max_s = max_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        stop = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < stop:
            self.samples.append(totals(tree(self.server_pid)))
            self._stop.wait(self.interval_s)


def report(section, idle: dict, idle_warm: dict, samples: list[dict]) -> None:
    from .harness import stats

    def one(value) -> dict:
        return stats([value]) if value is not None else {"p50": None, "p99": None, "n": 0}

    section.figure("server_rss_idle", "MB", one(idle["server_rss_mb"]), label="server RSS, idle (just started)")
    section.figure(
        "tree_pss_idle",
        "MB",
        one(idle["tree_pss_mb"]),
        label=f"server + zygote + {idle['workers']} spare worker(s), PSS, idle",
    )
    section.figure(
        "server_rss_idle_warm", "MB", one(idle_warm["server_rss_mb"]), label="server RSS, idle after the load"
    )
    section.figure(
        "tree_pss_idle_warm",
        "MB",
        one(idle_warm["tree_pss_mb"]),
        label=f"whole tree PSS, idle after the load ({idle_warm['workers']} workers)",
    )
    if samples:
        section.figure(
            "server_rss_load",
            "MB",
            stats([s["server_rss_mb"] for s in samples if s["server_rss_mb"]]),
            label="server RSS under load (p99 ~ peak)",
        )
        section.figure(
            "tree_rss_load", "MB", stats([s["tree_rss_mb"] for s in samples]), label="whole tree RSS under load"
        )
        section.figure(
            "tree_pss_load", "MB", stats([s["tree_pss_mb"] for s in samples]), label="whole tree PSS under load"
        )
        section.figure(
            "workers_load", "count", stats([s["workers"] for s in samples]), label="workers alive under load"
        )
        for key, label in (("worker_rss_mb", "RSS"), ("worker_pss_mb", "PSS"), ("worker_uss_mb", "USS (private)")):
            values = [v for s in samples for v in s[key]]
            section.figure(f"per_worker_{key[7:10]}_load", "MB", stats(values), label=f"per worker {label}, under load")
    section.note(
        "PSS shares each copy-on-write page among the processes that map it; USS is what a worker "
        "alone costs (what killing it would free)."
    )
