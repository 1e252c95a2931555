"""Isolated worker processes: the zygote, the worker loop, and the parent-side pool.

    job          Job (what the engine hands the pool), WorkerResult, RunStatus
    pool         WorkerPool: the trusted side; Pool, the Protocol the engine needs
    testing      InProcessPool: the Pool test double (no process, no rlimits)
    spawner      Spawner: starts the zygote and takes workers from it
    zygote       the warm parent that forks workers (its own clean interpreter)
    worker       the worker's loop: one owner for life, one job at a time
    protocol     the IPC frames (JSON, never pickle), each message listed
    limits       confine(): what a worker applies to itself after fork, in order
    jail         the zygote's side of the jail: which layers apply here, prepared once
    seccomp      the system-call allowlist (a BPF program built by hand)
    namespaces   the read-only mount tree, pid namespaces, ipc/uts/net namespaces
    cgroups      per-worker memory, pids and CPU limits where a hierarchy is writable
    layers       Layers: which layers are in effect and why any is missing
    diagnostics  facts from inside a worker, for the isolation tests only

Worker side (zygote, worker) imports only `runtime.workers` and the executor.
"""

from runtime.workers.job import Job, WorkerResult
from runtime.workers.pool import Pool, WorkerPool
from runtime.workers.spawner import WorkerUnavailable

__all__ = ["Job", "Pool", "WorkerPool", "WorkerResult", "WorkerUnavailable"]
