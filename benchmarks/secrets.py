"""Workload 4: a secret read inside a function -- the cost of one `secrets.API_KEY`.

Per read = (run with N reads - run with 0 reads) / N, both runs of the same
shape through the engine, interleaved; so it holds everything a read costs:
the IPC round trip, the broker's allowlist check, the decryption, the
access noted for the audit and its share of the commit. Beside it: the same
difference in our sandbox in process (no IPC), the broker's read alone and
a plain attribute read.
"""

from __future__ import annotations

from runtime.execution.secrets_broker import SecretsBroker

from .harness import Peer, Report, at_most, interleave, stats
from .lab import SECRET_VALUE, Lab, Restricted, plain

READS = 100
TEMPLATE = (
    "def main(event, secrets):\n    total = 0\n    for _ in range({n}):\n"
    "        total += len({expr})\n    return total\n"
)
US = 1e6


def source(n: int, read: bool) -> str:
    return TEMPLATE.format(n=n, expr="secrets.API_KEY" if read else "event.name")


def run(report: Report, lab: Lab, quick: bool) -> None:
    section = report.section("secrets", "4. Secret read inside a function (per read)")
    reads = lab.deploy("reads", source(READS, True))
    base = lab.deploy("no-reads", source(READS, False))
    r_reads, r_base = Restricted(source(READS, True), "{}"), Restricted(source(READS, False), "{}")
    store = lab.service.store
    owner = lab.actor.owner

    def broker_read() -> None:
        broker = SecretsBroker(
            store.secrets,
            owner=owner,
            declared=("API_KEY",),
            consumer_kind="logic_function",
            consumer_id="bench",
            consumer_name="bench",
            run_id="bench",
        )
        if broker.read("API_KEY") != SECRET_VALUE:
            raise RuntimeError("broker returned the wrong value")

    rounds = 3 if quick else 9
    n = 40 if quick else 150
    try:
        peers = [
            Peer("ours_reads", lambda: lab.run(reads), samples=n, budget_s=3),
            Peer("ours_base", lambda: lab.run(base), samples=n, budget_s=3),
            Peer("inprocess_reads", r_reads.call, samples=n, budget_s=2),
            Peer("inprocess_base", r_base.call, samples=n, budget_s=2),
            Peer("broker_read", broker_read, inner=10, samples=n, budget_s=2),
            Peer("plain_reads", plain(source(READS, True), "{}"), inner=10, samples=n, budget_s=1),
            Peer("plain_base", plain(source(READS, False), "{}"), inner=10, samples=n, budget_s=1),
        ]
        samples = interleave(peers, rounds)
    finally:
        r_reads.close()
        r_base.close()
    for name in ("ours_reads", "ours_base", "inprocess_reads", "inprocess_base", "broker_read"):
        section.figure(
            f"run_{name}",
            "us",
            stats(samples[name], US),
            label=f"{name.replace('_', ' ')}"
            + (f" ({READS} reads or not, whole run)" if name != "broker_read" else " (one read, no IPC)"),
        )

    def per_read(with_reads: str, without: str) -> dict:
        # Paired by round: the difference of the round medians, then p50/p99 over rounds.
        diffs = []
        for a, b in zip(samples[with_reads], samples[without], strict=True):
            if a and b:
                diffs.append([_median(a) - _median(b)])
        values = [d[0] / READS for d in diffs]
        return stats(values, US)

    section.figure(
        "per_read_ours",
        "us",
        per_read("ours_reads", "ours_base"),
        label="ours: one secret read, end to end",
        target=at_most(30, "p50 <= 30 us"),
    )
    section.figure(
        "per_read_inprocess",
        "us",
        per_read("inprocess_reads", "inprocess_base"),
        label="our sandbox in process: one read (no IPC)",
    )
    section.figure(
        "per_read_plain", "us", per_read("plain_reads", "plain_base"), label="plain Python: one attribute read"
    )
    section.ratio(
        "per_read_ours_over_broker",
        section.value("per_read_ours"),
        section.value("run_broker_read"),
        meaning="one read end to end / the broker's read alone (decrypt, allowlist)",
    )
    section.note(
        f"per-read figures are differences of round medians ({READS} reads vs none), so their p99 is the "
        "worst round; each read also adds one audit row to the run's commit."
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
