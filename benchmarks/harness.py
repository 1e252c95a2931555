"""The harness: interleaved rounds, statistics, targets, machine facts, table and JSON.

A workload builds `Peer`s (one callable = one unit of work) and hands them to
`interleave()`, which runs every peer in every round, in an order rotated per
round, so that a burst of noise on the machine hits all of them alike and the
ratios between them hold. Each sample is the time of `inner` calls divided by
`inner` (so a sub-microsecond floor is not swamped by the clock). Every loop
is bounded by a count and by a time budget.

What a workload reports goes into a `Section`: figures (with their unit,
p50, p99 and sample count), ratios between figures, and targets beside the
figure or ratio they judge. `Report` turns the sections into a printed table
and a JSON document holding every figure and every ratio.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- peers and rounds -----------------------------------------------------------------


@dataclass
class Peer:
    name: str
    op: Callable[[], Any]
    inner: int = 1  # calls per sample
    samples: int = 10  # samples per round
    budget_s: float = 2.0  # at most this long per round


def interleave(peers: list[Peer], rounds: int, *, warmup: int = 1) -> dict[str, list[list[float]]]:
    """Per peer, per round, the seconds per call of each sample."""
    for peer in peers:
        for _ in range(warmup):
            peer.op()
    out: dict[str, list[list[float]]] = {peer.name: [] for peer in peers}
    for r in range(rounds):
        shift = r % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            samples: list[float] = []
            stop = time.perf_counter() + peer.budget_s
            op, inner = peer.op, peer.inner
            for _ in range(peer.samples):
                t0 = time.perf_counter()
                for _ in range(inner):
                    op()
                t1 = time.perf_counter()
                samples.append((t1 - t0) / inner)
                if t1 > stop:
                    break
            out[peer.name].append(samples)
    return out


def bounded(count: int, seconds: float):
    """range(count), cut short once `seconds` have passed."""
    stop = time.perf_counter() + seconds
    for i in range(count):
        if i and time.perf_counter() > stop:
            return
        yield i


# -- statistics --------------------------------------------------------------------------


def baselines(variable: str) -> list[tuple[str, Path]]:
    """The older code trees named in environment `variable` as "label=/path/to/tree,...",
    to measure side by side with this one (e.g. `git worktree add /tmp/base HEAD~1`)."""
    trees = []
    for part in filter(None, (p.strip() for p in os.environ.get(variable, "").split(","))):
        label, _, path = part.partition("=")
        if not path or not (Path(path) / "runtime" / "cli.py").exists():
            raise RuntimeError(f"{variable}: {part!r} is not label=/path/to/a/logic-runtime/tree")
        trees.append((label.strip(), Path(path).resolve()))
    return trees


def env_variants(variable: str) -> list[tuple[str, dict[str, str]]]:
    """Servers of this tree with other settings, named in environment `variable` as
    "label:KEY=VALUE;KEY=VALUE,label:...", to measure side by side with the default
    (e.g. "one:LOGIC_DELIVERY_THREADS=1,nospin:LOGIC_WORKER_SPIN_US=0")."""
    found: list[tuple[str, dict[str, str]]] = []
    for part in filter(None, (p.strip() for p in os.environ.get(variable, "").split(","))):
        label, _, settings = part.partition(":")
        label = label.strip()
        pairs = [kv.partition("=") for kv in filter(None, (s.strip() for s in settings.split(";")))]
        if not label.isidentifier() or not pairs or any(not key or not eq for key, eq, _ in pairs):
            raise RuntimeError(f"{variable}: {part!r} is not label:KEY=VALUE;KEY=VALUE")
        if label == "current" or label in {name for name, _ in found}:
            raise RuntimeError(f"{variable}: the label {label!r} is taken")
        found.append((label, {key.strip(): value for key, _, value in pairs}))
    return found


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def stats(rounds: list[list[float]] | list[float], scale: float = 1.0) -> dict:
    """p50 and p99 over every sample of every round, plus the spread of the round medians."""
    if rounds and isinstance(rounds[0], list):
        per_round = [r for r in rounds if r]
        flat = [v for r in per_round for v in r]
    else:
        flat = list(rounds)
        per_round = [flat] if flat else []
    medians = [percentile(r, 50) * scale for r in per_round]
    return {
        "p50": _num(percentile(flat, 50) * scale),
        "p99": _num(percentile(flat, 99) * scale),
        "mean": _num(sum(flat) / len(flat) * scale) if flat else None,
        "min": _num(min(flat) * scale) if flat else None,
        "max": _num(max(flat) * scale) if flat else None,
        "n": len(flat),
        "rounds": len(per_round),
        "round_p50_min": _num(min(medians)) if medians else None,
        "round_p50_max": _num(max(medians)) if medians else None,
    }


def rate_stats(rates: list[float]) -> dict:
    """For throughputs measured once per round: the median round, and the worst and best."""
    return {
        "p50": _num(percentile(rates, 50)),
        "p99": _num(percentile(rates, 1)),  # the 99th percentile of badness: the slow end
        "min": _num(min(rates)) if rates else None,
        "max": _num(max(rates)) if rates else None,
        "n": len(rates),
        "rounds": len(rates),
    }


def _num(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(f"{value:.6g}")


# -- targets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[float], bool]
    key: str = "p50"  # which statistic of a figure it judges


def at_most(limit: float, text: str, key: str = "p50") -> Target:
    return Target(text, lambda v: v <= limit, key)


def at_least(limit: float, text: str, key: str = "p50") -> Target:
    return Target(text, lambda v: v >= limit, key)


# -- sections and the report ------------------------------------------------------------------


@dataclass
class Section:
    key: str
    title: str
    figures: dict[str, dict] = field(default_factory=dict)
    ratios: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def figure(self, name: str, unit: str, values: dict, *, label: str = "", target: Target | None = None) -> dict:
        row = {"label": label or name, "unit": unit, **values}
        if target is not None:
            _judge(row, target, row.get(target.key))
        self.figures[name] = row
        return row

    def value(self, name: str, key: str = "p50") -> float | None:
        row = self.figures.get(name)
        return None if row is None else row.get(key)

    def ratio(
        self,
        name: str,
        numerator: float | None,
        denominator: float | None,
        *,
        meaning: str,
        target: Target | None = None,
    ) -> dict:
        value = None
        if numerator is not None and denominator:
            value = _num(numerator / denominator)
        row = {"value": value, "meaning": meaning}
        if target is not None:
            _judge(row, target, value)
        self.ratios[name] = row
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "figures": self.figures,
            "ratios": self.ratios,
            "notes": self.notes,
            "errors": self.errors,
        }


def _judge(row: dict, target: Target, value: float | None) -> None:
    row["target"] = target.text
    row["target_key"] = target.key
    row["met"] = None if value is None else bool(target.check(value))


class Report:
    def __init__(self, *, quick: bool):
        self.quick = quick
        self.sections: list[Section] = []
        self.started = time.time()
        self.machine = machine()

    def section(self, key: str, title: str) -> Section:
        section = Section(key, title)
        self.sections.append(section)
        return section

    def targets(self) -> list[dict]:
        found = []
        for section in self.sections:
            for kind, rows in (("figure", section.figures), ("ratio", section.ratios)):
                for name, row in rows.items():
                    if "target" in row:
                        value = row.get("value") if kind == "ratio" else row.get(row.get("target_key", "p50"))
                        found.append(
                            {
                                "workload": section.key,
                                "kind": kind,
                                "name": name,
                                "target": row["target"],
                                "value": value,
                                "unit": "x" if kind == "ratio" else row.get("unit"),
                                "met": row["met"],
                            }
                        )
        return found

    def to_json(self) -> dict:
        self.machine["loadavg_end"] = _loadavg()
        return {
            "schema": 1,
            "mode": "quick" if self.quick else "full",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 3),
            "machine": self.machine,
            "workloads": {s.key: s.to_json() for s in self.sections},
            "targets": self.targets(),
        }

    def table(self) -> str:
        lines = [
            f"logic-runtime benchmarks ({'quick' if self.quick else 'full'})",
            "machine: " + ", ".join(f"{k}={v}" for k, v in self.machine.items() if k != "loadavg_end"),
        ]
        for section in self.sections:
            lines.append("")
            lines.append(f"== {section.title} [{section.key}]")
            lines.append(f"  {'figure':<52} {'p50':>11} {'p99':>11} {'unit':<9} {'n':>6}  target")
            for row in section.figures.values():
                lines.append(
                    f"  {row['label'][:52]:<52} {_fmt(row.get('p50')):>11} {_fmt(row.get('p99')):>11} "
                    f"{row['unit']:<9} {row.get('n', ''):>6}  {_verdict(row)}"
                )
            if section.ratios:
                lines.append(f"  {'ratio':<52} {'value':>11}")
                for name, row in section.ratios.items():
                    lines.append(f"  {name[:52]:<52} {_fmt(row['value']):>11} {'x':<9} {'':>6}  {_verdict(row)}")
                    lines.append(f"      ({row['meaning']})")
            for note in section.notes:
                lines.append(f"  note: {note}")
            for error in section.errors:
                lines.append(f"  ERROR: {error}")
        targets = self.targets()
        met = sum(1 for t in targets if t["met"])
        lines.append("")
        lines.append(f"targets met: {met} of {len(targets)}")
        for t in targets:
            mark = "MET   " if t["met"] else ("n/a   " if t["met"] is None else "MISSED")
            lines.append(f"  {mark} {t['workload']}.{t['name']}: {_fmt(t['value'])} {t['unit']} (target {t['target']})")
        return "\n".join(lines)


def _verdict(row: dict) -> str:
    if "target" not in row:
        return ""
    mark = "n/a" if row["met"] is None else ("MET" if row["met"] else "MISSED")
    return f"{row['target']}: {mark}"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


# -- machine -------------------------------------------------------------------------------------


def machine() -> dict:
    info = {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "memory_mb": _mem_total_mb(),
        "loadavg_start": _loadavg(),
        "executable": sys.executable,
    }
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_mb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_json(report: Report, path: str) -> dict:
    data = report.to_json()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
    return data


def throughput(op: Callable[[], Any], threads: int, seconds: float, max_ops: int) -> float:
    """Calls per second of `op` from `threads` threads for about `seconds` (at most `max_ops` calls)."""
    import threading

    lock = threading.Lock()
    count = [0]
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    per_thread = max(1, max_ops // threads)

    def loop() -> None:
        start.wait()
        stop = time.perf_counter() + seconds
        done = 0
        try:
            while done < per_thread and time.perf_counter() < stop:
                op()
                done += 1
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)
        with lock:
            count[0] += done

    workers = [threading.Thread(target=loop, name=f"bench-load-{i}", daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in workers:
        t.join(seconds * 4 + 60)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return count[0] / elapsed if elapsed > 0 else 0.0
