"""Workload: what the worker jail costs (issue 15), every layer on against the layers before it.

Two services side by side in one process tree, their peers interleaved round by round:
    jail      the default: seccomp, mount+pid+ipc+uts+net namespaces, uid, cgroups, rlimits
    before    `WorkerPool(jail=False)`: rlimits, and as root a network namespace and the uid
              (what a worker had before the jail)
Figures, for each:
    spawn       one new worker, from the fork request until it is confined and ready
                (no spare forked ahead: the fork, the jail and the hello, nothing else)
    new_owner   deploy + first run for an owner with no worker yet (cold.py's figure)
    fork_per_run  a run on a fresh worker every time (worker_max_runs=1), record committed
    warm        a run on a warm worker, record committed (warm.py's figure)
    worker_run  the worker's part of a warm run alone (`WorkerPool.run` of a trivial job:
                the IPC and the run in the worker, no engine, no commit): where a cost of
                the jail on the warm path would show first
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from runtime.sandbox.testing import default_limits
from runtime.service import Service
from runtime.workers import Job
from runtime.workers.pool import WorkerPool
from store import Settings, Store

from .harness import Peer, Report, at_most, interleave, stats
from .lab import SECRET_VALUE, Lab, context

SOURCE = "def main(event, secrets):\n    key = secrets.API_KEY\n    return len(key)\n"
US = 1e6
MS = 1e3


class PoolLab(Lab):
    """A Lab whose worker pool is built with `jail` (Lab itself takes the default pool)."""

    def __init__(self, jail: bool, **overrides):
        self.dir = Path(tempfile.mkdtemp(prefix="logic-bench-"))
        self.settings = Settings(home=self.dir / "home", master_key=None, **overrides)
        Store.initialize(self.settings)[0].close()
        pool = WorkerPool(self.settings, jail=jail)  # before the store: as Service.open does
        try:
            self.service = Service(Store.open(self.settings), pool=pool)
        except BaseException:
            pool.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.actor = self.service.actor()
        self.service.create_secret(self.actor, "API_KEY", SECRET_VALUE)
        self._users = 0


def trivial_job() -> Job:
    return Job(
        owner="user:bench-jail",
        version_key="bench-jail:1",
        source="def main(event):\n    return 1\n",
        filename="bench.py",
        entry="main",
        declared_secrets=(),
        context=context("{}"),
        timeout_s=5.0,
        memory_mb=None,
        limits=default_limits(),
    )


def _no_secret(name: str) -> str:
    raise KeyError(name)


class Spawns:
    """Workers started one by one from a pool that forks nothing ahead, then discarded."""

    def __init__(self, jail: bool):
        self.dir = Path(tempfile.mkdtemp(prefix="logic-bench-"))
        self.pool = WorkerPool(Settings(home=self.dir / "home", workers=2), prefork=False, jail=jail)

    def op(self) -> None:
        self.pool._spawn().discard()  # a benchmark may look inside: the spawn alone is timed

    def close(self) -> None:
        self.pool.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run(report: Report, quick: bool) -> None:
    section = report.section("jail", "Worker jail: every layer on vs the layers before it (issue 15)")
    rounds = 3 if quick else 9
    n = 100 if quick else 400
    per_round = 6 if quick else 20
    labs: dict[str, PoolLab] = {}
    forking: dict[str, PoolLab] = {}
    spawns: dict[str, Spawns] = {}
    try:
        for variant, jail in (("jail", True), ("before", False)):
            labs[variant] = PoolLab(jail)
            forking[variant] = PoolLab(jail, worker_max_runs=1)
            spawns[variant] = Spawns(jail)
        layers = {variant: lab.service.pool.layers.summary() for variant, lab in labs.items()}
        peers = []
        for variant in ("jail", "before"):
            lab, fork_lab = labs[variant], forking[variant]
            warm_fn = lab.deploy("warm", SOURCE)
            fork_fn = fork_lab.deploy("warm", SOURCE)
            users = [lab.new_user() for _ in range(rounds * per_round + 2)]
            counter = [0]

            def new_owner(lab=lab, users=users, counter=counter) -> None:
                counter[0] += 1
                fn = lab.deploy("cold-owner", SOURCE + f"# version {counter[0]}\n", actor=users.pop())
                lab.run(fn)

            peers += [
                Peer(f"spawn_{variant}", spawns[variant].op, samples=per_round * 2, budget_s=5),
                Peer(f"new_owner_{variant}", new_owner, samples=per_round, budget_s=5),
                Peer(f"fork_per_run_{variant}", lambda lab=fork_lab, fn=fork_fn: lab.run(fn), samples=n // 4),
                Peer(f"warm_{variant}", lambda lab=lab, fn=warm_fn: lab.run(fn), samples=n, budget_s=3),
                Peer(
                    f"worker_run_{variant}",
                    lambda pool=lab.service.pool, job=trivial_job(): pool.run(job, _no_secret),
                    samples=n,
                    budget_s=3,
                ),
            ]
        samples = interleave(peers, rounds)
    finally:
        for group in (labs, forking, spawns):
            for item in group.values():
                item.close()
    labels = {
        "spawn": ("ms", MS, "one new worker: fork, confinement, ready"),
        "new_owner": ("ms", MS, "deploy + first run on a fresh worker"),
        "fork_per_run": ("ms", MS, "a run on a fresh worker each time, record committed"),
        "warm": ("us", US, "a run on a warm worker, record committed"),
        "worker_run": ("us", US, "the worker's part of a warm run (pool.run, trivial job)"),
    }
    for name, (unit, scale, label) in labels.items():
        for variant in ("jail", "before"):
            target = None
            if variant == "jail" and name == "new_owner":
                target = at_most(10, "p50 <= 10 ms")
            section.figure(
                f"{name}_{variant}",
                unit,
                stats(samples[f"{name}_{variant}"], scale),
                label=f"{variant}: {label}",
                target=target,
            )
        section.ratio(
            f"{name}_jail_over_before",
            section.value(f"{name}_jail"),
            section.value(f"{name}_before"),
            meaning=f"{label}: every layer / the layers before the jail (p50)",
        )
    section.note(f"jail: {layers['jail']}")
    section.note(f"before: {layers['before']}")
