"""Workload 5: redaction throughput over log text, with 10, 100 and 1,000 secrets registered.

Each secret is a random 32-character token, registered with every encoding
the redactor derives (base64 at each offset, base85, URL, JSON, repr, hex).
The text is realistic log output (timestamps, levels, ids, JSON, numbers):
`clean` holds no secret (the common case), `hits` carries one encoded secret
about every 10 KB. Shapes: one big string (`redact`) and the same text as
run-log records (`redact_json` over [{"at", "level", "message"}], as the
engine stores them). Peer: one `str.find` scan of the same text (memory speed).
"""

from __future__ import annotations

import base64
import random
import string
import time
from urllib.parse import quote

from runtime.execution.redactor import Redactor

from .harness import Peer, Report, at_least, interleave, stats

COUNTS = (10, 100, 1000)
_WORDS = (
    "sensor",
    "reading",
    "ok",
    "device",
    "temperature",
    "humidity",
    "retry",
    "queue",
    "published",
    "request",
    "response",
    "status",
    "latency",
    "firmware",
    "battery",
    "signal",
    "gateway",
    "upload",
)


def secrets(count: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits
    return ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(count)]


def log_lines(size: int, rng: random.Random) -> list[str]:
    lines, total, i = [], 0, 0
    while total < size:
        i += 1
        kind = i % 4
        if kind == 0:
            line = (
                f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z INFO "
                f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} id={rng.getrandbits(64):016x} n={i}"
            )
        elif kind == 1:
            line = '{"device": "%s", "value": %d, "unit": "C", "seq": %d, "tags": ["%s", "%s"]}' % (
                f"{rng.getrandbits(48):012x}",
                rng.randint(-400, 1200),
                i,
                rng.choice(_WORDS),
                rng.choice(_WORDS),
            )
        elif kind == 2:
            line = " ".join(rng.choice(_WORDS) for _ in range(12)) + f" took {rng.random() * 100:.3f} ms"
        else:
            line = f"GET /v1/devices/{rng.getrandbits(32):08x}/events?limit=100 -> 200 ({rng.randint(1, 999)} bytes)"
        lines.append(line)
        total += len(line) + 1
    return lines


def encodings(value: str) -> list[str]:
    data = value.encode()
    return [
        value,
        base64.b64encode(data).decode(),
        base64.b64encode(b"user:" + data).decode(),
        quote(value),
        data.hex(),
        '"' + value + '"',
    ]


def with_hits(lines: list[str], values: list[str], rng: random.Random, every_bytes: int = 10_000) -> list[str]:
    out, since = [], 0
    for line in lines:
        since += len(line) + 1
        if since >= every_bytes:
            since = 0
            line = line + " auth=" + rng.choice(encodings(rng.choice(values)))
        out.append(line)
    return out


def run(report: Report, quick: bool) -> None:
    section = report.section("redaction", "5. Redaction throughput (log text, secrets with all their encodings)")
    size = (2 if quick else 10) * 1_000_000
    rng = random.Random(20260101)
    lines = log_lines(size, rng)
    values = {count: secrets(count, rng) for count in COUNTS}
    redactors = {}
    for count in COUNTS:
        t0 = time.perf_counter()
        redactors[count] = Redactor(values[count])
        built = time.perf_counter() - t0
        section.figure(
            f"build_{count}",
            "ms",
            stats([built], 1e3),
            label=f"build a redactor for {count} secrets ({redactors[count].pattern_count:,} patterns)",
        )
    clean_text = "\n".join(lines)
    mb = len(clean_text.encode()) / 1e6
    hits_text = {count: "\n".join(with_hits(lines, values[count], rng)) for count in COUNTS}
    records = [{"at": "2026-01-01T00:00:00.000Z", "level": "info", "message": line} for line in lines]
    missing = "".join(rng.choice(string.ascii_letters) for _ in range(32))

    def scan(redactor: Redactor, text: str, expect_change: bool):
        def op() -> None:
            out = redactor.redact(text)
            if (out is not text) != expect_change:
                raise RuntimeError("redaction result is not what the text holds")

        return op

    peers = [Peer("floor_find", lambda: clean_text.find(missing), samples=3)]
    for count in COUNTS:
        redactor = redactors[count]
        peers.append(Peer(f"clean_{count}", scan(redactor, clean_text, False), samples=3, budget_s=5))
        peers.append(Peer(f"hits_{count}", scan(redactor, hits_text[count], True), samples=3, budget_s=5))
        peers.append(Peer(f"records_{count}", lambda r=redactor: r.redact_json(records), samples=2, budget_s=5))
    samples = interleave(peers, 3 if quick else 7)

    def mbps(name: str) -> dict:
        """MB/s from the time statistics: p50 from the median time, p99 from the p99 (slow) time."""
        times = stats(samples[name])
        rates = {key: (mb / times[key] if times[key] else None) for key in ("p50", "p99", "mean")}
        return {
            **times,
            **rates,
            "min": mb / times["max"],
            "max": mb / times["min"],
            "round_p50_min": mb / times["round_p50_max"],
            "round_p50_max": mb / times["round_p50_min"],
        }

    section.figure("floor_find", "MB/s", mbps("floor_find"), label="peer: one str.find scan (memory speed)")
    for count in COUNTS:
        target = at_least(100, ">= 100 MB/s")
        section.figure(
            f"clean_{count}", "MB/s", mbps(f"clean_{count}"), label=f"{count} secrets, clean text", target=target
        )
        section.figure(
            f"hits_{count}", "MB/s", mbps(f"hits_{count}"), label=f"{count} secrets, a hit every ~10 KB", target=target
        )
        section.figure(
            f"records_{count}",
            "MB/s",
            mbps(f"records_{count}"),
            label=f"{count} secrets, as run-log records",
            target=target,
        )
    for shape in ("clean", "hits", "records"):
        section.ratio(
            f"flatness_{shape}_1000_vs_10",
            section.value(f"{shape}_1000"),
            section.value(f"{shape}_10"),
            meaning=f"MB/s with 1,000 secrets / MB/s with 10 ({shape}); flat = at least 0.8",
            target=at_least(0.8, ">= 0.8 (flat)"),
        )
    section.note(
        f"text: {mb:.1f} MB in {len(lines):,} lines; MB/s counts the UTF-8 bytes of the input "
        "(p50 = MB over the median time, p99 = MB over the p99 time: the slow end)."
    )
