"""Workload 3: a compute-heavy body -- decode and reformat 10,000 base64 sensor frames in one run.

The frames arrive as the event data (comma-separated base64 of 6-byte
little-endian records: id, temperature x100, humidity x100; ~90 KB, under
the 100 KiB event limit). The function decodes each, reformats it as a JSON
object and returns a summary. Ours end to end (engine, worker, record
committed) and our sandbox in process, beside plain CPython and asteval.
"""

from __future__ import annotations

import base64
import json
import struct

from .harness import Peer, Report, at_least, at_most, interleave, stats
from .lab import Lab, Restricted, asteval_peer, plain

FRAMES = 10_000
SOURCE = """import base64
import json
import struct

def main(event, secrets):
    frames = event.data.split(",")
    readings = []
    total = 0
    for frame in frames:
        raw = base64.b64decode(frame)
        ident, temp, hum = struct.unpack("<HhH", raw)
        total += temp
        readings.append({"id": ident, "temp_c": temp / 100, "humidity": hum / 100})
    text = json.dumps(readings)
    return {"frames": len(readings), "mean_temp_c": total / len(readings) / 100, "json_bytes": len(text)}
"""
MS = 1e3


def frames(count: int = FRAMES) -> str:
    return ",".join(
        base64.b64encode(struct.pack("<HhH", i % 65536, (i * 37) % 6000 - 2000, (i * 53) % 10000)).decode()
        for i in range(count)
    )


def run(report: Report, lab: Lab, quick: bool) -> None:
    section = report.section("compute", "3. Compute-heavy body (decode + reformat 10,000 base64 frames)")
    data = frames()
    fn = lab.deploy("compute", SOURCE)
    expected = plain(SOURCE, data)()
    got = lab.run(fn, data)["result"]
    if got != json.loads(json.dumps(expected)):
        raise RuntimeError(f"ours and plain Python disagree: {got} != {expected}")
    restricted = Restricted(SOURCE, data)
    rounds = 3 if quick else 9
    n = 4 if quick else 12
    try:
        peers = [
            Peer("ours", lambda: lab.run(fn, data), samples=n, budget_s=3),
            Peer("restricted_inprocess", restricted.call, samples=n, budget_s=3),
            Peer("plain", plain(SOURCE, data), samples=n, budget_s=3),
            Peer(
                "asteval",
                asteval_peer(SOURCE, data, {"base64": base64, "json": json, "struct": struct}),
                samples=2 if quick else 4,
                budget_s=6,
            ),
        ]
        samples = interleave(peers, rounds)
    finally:
        restricted.close()
    labels = {
        "ours": "ours: engine.run end to end (record committed)",
        "restricted_inprocess": "our sandbox in process (no IPC, no commit)",
        "plain": "plain Python",
        "asteval": "asteval, same body",
    }
    for name, label in labels.items():
        section.figure(f"compute_{name}", "ms", stats(samples[name], MS), label=label)
    ours = section.value("compute_ours")
    section.ratio(
        "ours_over_plain",
        ours,
        section.value("compute_plain"),
        meaning="ours end to end / plain Python (p50)",
        target=at_most(2, "<= 2x"),
    )
    section.ratio(
        "asteval_over_ours",
        section.value("compute_asteval"),
        ours,
        meaning="asteval / ours end to end (p50)",
        target=at_least(20, ">= 20x"),
    )
    section.ratio(
        "sandbox_over_plain",
        section.value("compute_restricted_inprocess"),
        section.value("compute_plain"),
        meaning="RestrictedPython guards alone / plain Python (p50)",
    )
    section.note(f"event data: {len(data):,} bytes of base64 frames.")
