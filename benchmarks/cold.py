"""Workload 2: cold start -- deploy a new version and complete its first run.

    new_owner       deploy + first run for an owner with no worker yet: a fresh
                    worker (the zygote's pre-forked spare, or a fork) and a
                    compile in it. The target applies here.
    new_version     deploy a new version + first run on the owner's warm worker
                    (the compile is the only cold part)
    deploy_only     the deploy alone (parse, policy checks, compile, commit)
Peers: the compile alone in process (its floor), one fork per run, one
subprocess per run.
"""

from __future__ import annotations

from runtime.sandbox.testing import compile_source

from .harness import Peer, Report, at_most, interleave, stats
from .lab import ForkServer, Lab, subprocess_peer

SOURCE = "def main(event, secrets):\n    key = secrets.API_KEY\n    return len(key)\n"
US = 1e6
MS = 1e3


def run(report: Report, lab: Lab, quick: bool) -> None:
    section = report.section("cold", "2. Cold start (deploy a new version, complete its first run)")
    rounds = 3 if quick else 7
    per_round = 6 if quick else 20
    users = [lab.new_user() for _ in range(rounds * per_round + 2)]
    counter = [0]

    def versioned() -> str:
        counter[0] += 1
        return SOURCE + f"# version {counter[0]}\n"

    fn_version = lab.deploy("cold-version", SOURCE)
    lab.run(fn_version)
    spawns: list[int] = []

    def new_owner() -> None:
        before = lab.service.pool.spawns
        user = users.pop()
        fn = lab.deploy("cold-owner", versioned(), actor=user)
        lab.run(fn)
        spawns.append(lab.service.pool.spawns - before)

    def new_version() -> None:
        fn = lab.deploy("cold-version", versioned())
        lab.run(fn)

    def deploy_only() -> None:
        lab.deploy("cold-deploy", versioned())

    def compile_only() -> None:
        compile_source(versioned(), filename="cold.py", declared_secrets=("API_KEY",))

    forker = ForkServer(SOURCE, "{}")
    try:
        forker.op()  # its interpreter start is not a per-run cost
        peers = [
            Peer("new_owner", new_owner, samples=per_round, budget_s=5),
            Peer("new_version", new_version, samples=per_round, budget_s=5),
            Peer("deploy_only", deploy_only, samples=per_round, budget_s=5),
            Peer("compile_only", compile_only, samples=per_round * 3, budget_s=5),
            Peer("fork", forker.op, samples=per_round * 3, budget_s=5),
            Peer("subprocess", subprocess_peer(SOURCE, "{}"), samples=2 if quick else 5, budget_s=5),
        ]
        samples = interleave(peers, rounds, warmup=0)
    finally:
        forker.close()
    labels = {
        "new_owner": "ours: deploy + first run on a fresh worker",
        "new_version": "ours: deploy new version + first run (warm worker)",
        "deploy_only": "deploy alone (checks, compile, commit)",
        "compile_only": "compile_function alone, in process",
        "fork": "peer: fork per run (small warm parent)",
        "subprocess": "peer: subprocess per run (python -c)",
    }
    for name, label in labels.items():
        target = at_most(10, "p50 <= 10 ms") if name == "new_owner" else None
        section.figure(f"cold_{name}", "ms", stats(samples[name], MS), label=label, target=target)
    section.ratio(
        "subprocess_over_new_owner",
        section.value("cold_subprocess"),
        section.value("cold_new_owner"),
        meaning="one subprocess run / our cold start (p50)",
    )
    section.ratio(
        "new_owner_over_fork",
        section.value("cold_new_owner"),
        section.value("cold_fork"),
        meaning="our cold start / one fork per run (p50)",
    )
    section.ratio(
        "new_version_over_compile",
        section.value("cold_new_version"),
        section.value("cold_compile_only"),
        meaning="new version + first run / compile alone (p50)",
    )
    fresh = sum(1 for s in spawns if s > 0)
    section.note(
        f"new_owner runs that started a worker: {fresh} of {len(spawns)} (the rest found none needed); "
        f"with {lab.settings.workers} workers at most, each new owner also evicts an idle worker."
    )
