"""WorkerPool: the parent (trusted) side of the worker processes.

`run(job, on_secret)` reserves a worker bound to the job's owner (or starts
one), sends the job as one frame, serves the worker's log / publish / secret
frames until its "done", and enforces everything a compromised worker could
ignore: the wall clock (SIGKILL at the deadline, through a pidfd), the log,
event, result and frame caps. No thread per run: the calling thread waits on
the socket with a deadline.

Worker lifecycle: spawned by the zygote on demand (or handed over pre-forked),
bound to the first job it runs for — its owner, its declared secrets and its memory
limit (a `Binding`) — and reused only for jobs of that same binding, and discarded after a timeout, a memory limit, a
crash, a protocol violation, an output flood, or `worker_max_runs` runs.
At capacity (`settings.workers`) an idle worker of another owner is evicted;
when every worker is busy, run() waits. One owner has at most
`settings.owner_runs_max` runs in flight (half the workers by default): its
further runs wait while the other owners' go ahead (threat: one tenant's
slow runs taking every worker).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import select
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, cast

from runtime.sandbox.executor import LedgerError, SecretAccessError
from runtime.sandbox.masks import mask_problem
from runtime.sandbox.output import LogBudget, line_bytes
from runtime.sandbox.results import MAX_NESTING
from runtime.workers import protocol
from runtime.workers.job import Job, RunStatus, WorkerResult
from runtime.workers.layers import Layers
from runtime.workers.limits import EXIT_CPU
from runtime.workers.spawner import Spawned, Spawner, WorkerUnavailable
from runtime.workers.worker import EXIT_ISOLATION, EXIT_MEMORY
from store.clock import now_iso
from store.errors import LogicError

log = logging.getLogger("logic.workers")

WORKER_UID_BASE = 1_900_000_000  # a uid range nothing else on the host uses (root mode)
LOG_LEVELS = frozenset({"info", "warning", "error"})
# An honest worker cuts its own log exactly where the parent would (the same LogBudget)
# and sends nothing after its marker. Past cap * this of frames refused, a worker is
# flooding on purpose: kill it.
_FLOOD_FACTOR = 4
_FRAME_OVERHEAD = 64  # bytes charged per dropped frame, so empty frames count too
_READY_TIMEOUT_S = 10.0
_DONE_FIELDS = frozenset({"success", "error", "memory_exceeded"})
_ERROR_FIELDS = ("type", "message", "traceback")
_KERNEL_MEMORY_MB = 32  # the memory cgroup's room above RLIMIT_AS: page tables, socket buffers, /tmp


# What an idle worker may be reused for: (owner, declared secrets, memory limit in MiB).
# Threat: code that escaped the language layer stays in its worker. Reused for another of
# the owner's functions, it would ask the parent for that function's secrets (the parent
# hands over what the job declares) and keep them for its own next run; and a run's memory
# limit is the hard RLIMIT_AS, which a worker cannot raise again for a bigger job.
Binding = tuple[str, frozenset[str], int]


def binding_of(job: Job, memory_max_mb: int) -> Binding:
    return job.owner, frozenset(job.declared_secrets), run_memory_mb(job, memory_max_mb)


def run_memory_mb(job: Job, memory_max_mb: int) -> int:
    """The job's memory limit: its manifest's, never above the operator's."""
    return min(int(job.memory_mb or memory_max_mb), memory_max_mb)


class Pool(Protocol):
    """What the engine needs of a worker pool. `WorkerPool` is the real one (processes);
    `runtime.workers.testing.InProcessPool` the test double that runs jobs in this process."""

    others_busy: Callable[[], bool]  # set by the HTTP app: whether requests wait for the CPU

    def run(
        self,
        job: Job,
        on_secret: Callable[[str], str],
        on_start: Callable[[], None] | None = None,
        on_ledger: OnLedger | None = None,
    ) -> WorkerResult: ...

    def close(self) -> None: ...


# A run's ledger call, answered by the parent: (action, name, data_json, mode) -> answer;
# raises LedgerError or LogicError with a message safe to show (the LedgerBroker).
OnLedger = Callable[[str, str, "str | None", "str | None"], dict]


class _Flood(Exception):
    pass


class _Worker:
    __slots__ = ("pid", "sock", "pidfd", "reader", "owner", "binding", "runs", "versions", "spawner", "poller", "facts")

    def __init__(self, spawned: Spawned, spawner: Spawner, max_frame: int):
        self.pid = spawned.pid
        self.sock = spawned.sock
        self.pidfd = spawned.pidfd
        self.reader = protocol.FrameReader(self.sock, max_frame)
        self.owner: str | None = None
        self.binding: Binding | None = None  # what it was reserved for first (see Binding)
        self.runs = 0
        self.versions: set[str] = set()
        self.spawner = spawner
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN)
        self.facts: dict = {}

    def looks_dead(self) -> bool:
        """An idle worker never speaks first: anything readable is EOF or abuse, and so is
        anything left in the reader's buffer (frames a rogue sent in one write after its
        "done" would otherwise be read as the next run's answers)."""
        return self.reader.buffered or bool(self.poller.poll(0))

    def kill(self) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass

    def discard(self) -> None:
        self.kill()
        self.sock.close()
        os.close(self.pidfd)
        self.spawner.forget(self.pid)


class WorkerPool:
    """Isolated worker processes for running user functions.

    Create it early, before the store is opened (the zygote is a fresh exec
    that inherits no memory, descriptor or environment anyway).

    isolate: None (auto) = as root, jail each worker in namespaces of its own
        (mount, pid, ipc, uts, net), its own uid and its slot's cgroups where
        the host allows each (a root container without CAP_SYS_ADMIN does not:
        then a warning naming what is missing); not root, the seccomp filter
        and rlimits only. True demands the namespaces and the uid (workers that
        cannot confine themselves fail to start). False turns them off (tests
        of the non-root path). `pool.isolated` tells whether they are in
        effect, `pool.layers` every layer (runtime/workers/layers.py).
    diagnostics: TEST ONLY. Lets `diagnose()` inspect a worker from inside.
    prefork: keep one confined, un-owned worker forked ahead.
    jail: False keeps only the layers before the worker jail (rlimits, and as root a
        network namespace and the uid): the benchmarks' baseline, never production.
    """

    def __init__(
        self,
        settings,
        *,
        isolate: bool | None = None,
        diagnostics: bool = False,
        prefork: bool = True,
        uid_base: int = WORKER_UID_BASE,
        executor: str = "runtime.sandbox.executor",
        jail: bool = True,
    ):
        if isolate and os.geteuid() != 0:
            raise ValueError("worker isolation (namespaces, own uid, cgroups) needs root")
        self._settings = settings
        self._diagnostics = diagnostics
        self._capacity = max(1, int(settings.workers))
        self._owner_cap = max(1, min(self._capacity, int(settings.owner_runs_max)))
        self._busy_of: dict[str, int] = {}  # runs in flight per owner
        self._max_runs = max(1, int(settings.worker_max_runs))
        # JSON escaping can grow text up to 6x (\u0000); past this, a frame is abuse.
        biggest = max(settings.result_max_bytes, settings.log_max_bytes, settings.event_data_max_bytes)
        self._max_frame = 6 * biggest + 65536
        self._config = {
            "executor": executor,
            "memory_mb": int(settings.worker_memory_mb),
            "open_files": int(settings.worker_open_files),
            "isolate": "auto" if isolate is None else bool(isolate),
            "uid_base": uid_base,
            "diagnostics": diagnostics,
            "prefork": prefork,
            "jail": jail,
            "source_max_bytes": int(settings.source_max_bytes),
            "ast_max_depth": int(settings.ast_max_depth),
            # The jail (runtime/workers/jail.py): seccomp applies on every path, cgroups as root.
            "seccomp": settings.worker_seccomp,
            "cgroups": bool(settings.worker_cgroups),
            "cgroup_limits": {
                "memory_mb": int(settings.worker_cgroup_memory_mb)
                or int(settings.worker_memory_mb) + _KERNEL_MEMORY_MB,
                "pids_max": int(settings.worker_pids_max),
                "cpu_percent": int(settings.worker_cpu_percent),
            },
        }
        self._spin_s = min(max(0, int(settings.worker_spin_us)), 10_000) / 1e6
        self._spin_max = 2 * (os.cpu_count() or 1)
        # Set by the host process when it has other work for the CPU (the HTTP server):
        # then the parent does not spin, see _execute.
        self.others_busy: Callable[[], bool] = lambda: False
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._spawn_lock = threading.Lock()
        self._idle: dict[Binding, list[_Worker]] = {}
        self._idle_order: OrderedDict[_Worker, None] = OrderedDict()  # oldest first: eviction order
        self._busy: set[_Worker] = set()
        self._count = 0  # idle + busy + being spawned
        self._closed = False
        self.spawns = 0  # workers started so far (tests check the warm path does not fork)
        self._spawner = Spawner(self._config)
        self.isolated = bool(self._spawner.hello.get("isolate"))
        self.layers = Layers.from_json(self._spawner.hello.get("layers") or {})
        if self.layers.missing:
            # Said plainly at every start: which of the worker's layers are not in effect, and why.
            log.warning("worker jail incomplete: %s", self.layers.summary())

    # -- public ---------------------------------------------------------------

    def run(
        self,
        job: Job,
        on_secret: Callable[[str], str],
        on_start: Callable[[], None] | None = None,
        on_ledger: OnLedger | None = None,
    ) -> WorkerResult:
        """Run `job` on a worker of its owner; `on_start` is called once a worker is
        reserved, right before the job is sent (waiting for a worker may take long);
        `on_ledger` answers the run's ledger calls (None: every call is refused)."""
        for _attempt in range(3):
            worker = self._reserve(job.owner, binding_of(job, int(self._settings.worker_memory_mb)))
            if worker.looks_dead():  # exited between runs: never charge the run for it
                self._release(worker, keep=False)
                continue
            keep = False
            if on_start is not None:
                try:
                    on_start()
                except BaseException:
                    self._release(worker, keep=True)
                    raise
            try:
                result, keep = self._execute(worker, job, on_secret, on_ledger)
            finally:
                self._release(worker, keep)
            return result
        raise WorkerUnavailable("workers keep exiting before they can run a job")

    def diagnose(self, owner: str, **request) -> dict:
        """TEST ONLY (needs diagnostics=True): facts from inside a worker of `owner`."""
        if not self._diagnostics:
            raise RuntimeError("diagnostics are off: build the pool with diagnostics=True (tests only)")
        worker = self._reserve(owner, None)  # the owner's idle worker of any binding (what a run left)
        keep = False
        try:
            protocol.send(worker.sock, {"op": "diagnose", **request})
            reply = worker.reader.read(time.monotonic() + 5.0)
            keep = reply is not None
            # The worker may be pid 1 of its own namespace: its pid as the host sees it, too.
            return {**reply, "worker_pid": worker.pid} if reply is not None else {"op": "eof", "pid": worker.pid}
        except (OSError, protocol.ProtocolError):
            return {"op": "eof", "pid": worker.pid}
        finally:
            self._release(worker, keep)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle = list(self._idle_order)
            busy = list(self._busy)
            self._idle.clear()
            self._idle_order.clear()
            self._cond.notify_all()
        for worker in busy:
            worker.kill()  # its run ends "crashed"; its own thread discards it
        for worker in idle:
            worker.discard()
        self._spawner.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reserving and releasing ------------------------------------------------

    def _reserve(self, owner: str, binding: Binding | None) -> _Worker:
        """An idle worker of `binding` (None: of any binding of `owner`, for diagnose), else a
        new one, evicting the oldest idle worker at capacity."""
        evicted = None
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerUnavailable("the worker pool is closed")
                if self._busy_of.get(owner, 0) >= self._owner_cap:
                    self._cond.wait()
                    continue
                key = binding if binding is not None else next((b for b in self._idle if b[0] == owner), None)
                stack = self._idle.get(key) if key is not None else None
                if stack:
                    worker = stack.pop()
                    if not stack:
                        del self._idle[cast(Binding, key)]
                    del self._idle_order[worker]
                    self._busy.add(worker)
                    self._busy_of[owner] = self._busy_of.get(owner, 0) + 1
                    return worker
                if self._count < self._capacity:
                    break
                if self._idle_order:
                    evicted = next(iter(self._idle_order))
                    self._remove_idle(evicted)
                    break  # its place goes to the new worker: _count unchanged
                self._cond.wait()
            if evicted is None:
                self._count += 1
            self._busy_of[owner] = self._busy_of.get(owner, 0) + 1
        if evicted is not None:
            evicted.discard()
        try:
            worker = self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._unbusy(owner)
                self._cond.notify_all()
            raise
        worker.owner, worker.binding = owner, binding or (owner, frozenset(), 0)
        with self._cond:
            self._busy.add(worker)
        return worker

    def _remove_idle(self, worker: _Worker) -> None:  # an idle worker has its binding (_reserve)
        binding = cast(Binding, worker.binding)
        stack = self._idle[binding]
        stack.remove(worker)
        if not stack:
            del self._idle[binding]
        del self._idle_order[worker]

    def _unbusy(self, owner: str) -> None:
        left = self._busy_of.get(owner, 0) - 1
        if left > 0:
            self._busy_of[owner] = left
        else:
            self._busy_of.pop(owner, None)

    def _release(self, worker: _Worker, keep: bool) -> None:
        with self._cond:
            if worker in self._busy:  # a busy worker has its owner (_reserve)
                self._unbusy(cast(str, worker.owner))
            self._busy.discard(worker)
            keep = keep and not self._closed and worker.spawner is self._spawner and worker.runs < self._max_runs
            if keep:
                self._idle.setdefault(cast(Binding, worker.binding), []).append(worker)
                self._idle_order[worker] = None
            else:
                self._count -= 1
            # Every waiter looks again: the one woken by notify() may be an owner at its cap.
            self._cond.notify_all()
        if not keep:
            worker.discard()

    def _spawn(self) -> _Worker:
        last_error = None
        for _attempt in range(2):
            with self._spawn_lock:
                if not self._spawner.alive:
                    self._restart_zygote()
                spawner = self._spawner
            try:
                spawned = spawner.spawn()
            except WorkerUnavailable as exc:  # the zygote died under us: restart it once
                last_error = exc.message
                continue
            worker = _Worker(spawned, spawner, self._max_frame)
            with self._lock:
                self.spawns += 1
            try:
                ready = worker.reader.read(time.monotonic() + _READY_TIMEOUT_S)
            except (OSError, protocol.ProtocolError):
                ready = None
            if ready is not None and ready.get("op") == "ready":
                worker.facts = ready
                return worker
            status = spawner.wait_exit(worker.pid, 1.0)
            worker.discard()
            if status is not None and status.code == EXIT_ISOLATION:
                raise WorkerUnavailable("a worker could not confine itself (namespaces, uid, cgroups or seccomp)")
            last_error = status.describe() if status else "no exit status"
        raise WorkerUnavailable(f"no worker could be started ({last_error})")

    def _restart_zygote(self) -> None:
        """The zygote died: kill every worker it forked, then start a new one.

        Its workers must go first: the new zygote hands out the same uids.
        """
        log.warning("worker zygote died; restarting it")
        with self._cond:
            idle = list(self._idle_order)
            busy = list(self._busy)
            for worker in idle:
                self._remove_idle(worker)
                self._count -= 1
        for worker in busy:
            worker.kill()  # its run ends "crashed"; _release discards it (old spawner)
        for worker in idle:
            worker.discard()
        self._spawner.close(timeout_s=1.0)
        self._spawner = Spawner(self._config)

    # -- one run ------------------------------------------------------------------

    def _execute(
        self, worker: _Worker, job: Job, on_secret: Callable[[str], str], on_ledger: OnLedger | None
    ) -> tuple[WorkerResult, bool]:
        settings = self._settings
        limits = job.limits
        # The one place the manifest's limits meet the operator's: the lower wins.
        timeout_s = min(float(job.timeout_s or settings.run_timeout_s), float(settings.run_timeout_s))
        memory_mb = run_memory_mb(job, int(settings.worker_memory_mb))
        budget = LogBudget(min(limits.log_max_bytes, settings.log_max_bytes))
        log_cap = budget.cap + 1  # what refused frames are measured against (never 0)
        events_cap = min(limits.events_max, settings.events_per_run_max)
        result_cap = min(limits.result_max_bytes, settings.result_max_bytes)
        data_cap = min(limits.event_data_max_bytes, settings.event_data_max_bytes)
        message: dict[str, Any] = {
            "op": "run",
            "version_key": job.version_key,
            "filename": job.filename,
            "entry": job.entry,
            "declared_secrets": list(job.declared_secrets),
            "context": job.context,
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "limits": _limits_dict(limits),
            "spin_s": 0.0,
        }
        if job.version_key not in worker.versions:
            message["source"] = job.source
        logs: list[dict] = []
        events: list[dict] = []
        masks: list[str] = []
        secret_reads = ledger_calls = 0
        reads_cap = int(settings.secret_reads_per_run_max)
        ledger_cap = int(settings.ledger_calls_per_run_max)
        # Threat: frames whose fields are not capped (padding beside a short log message):
        # what an honest run can send at most (JSON escaping grows text up to 6x), twice.
        frames_budget = 2 * (
            6 * (budget.cap + result_cap + events_cap * data_cap + ledger_cap * int(settings.ledger_max_bytes))
            + 256 * (reads_cap + ledger_cap)
            + 65536
        )
        frames_start = worker.reader.received
        dropped = 0  # bytes (+ per-frame overhead) refused past the caps
        status: RunStatus
        status, result, error, keep = "crashed", None, None, False
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        sock, reader = worker.sock, worker.reader
        worker.runs += 1
        # Spinning (see protocol.FrameReader.read) pays while CPUs are spare. Both sides spin
        # while at most 2 x cores runs are in flight: on a VM, where every sleep and wake-up
        # costs far more CPU than the spin, that wins even at full load (4 threads on 2
        # cores: 3,000 -> 4,000 runs/s; a backlog of deliveries drains at 2,350 instead of
        # 1,900 runs/s). This process does not spin while HTTP requests are under way: its
        # spin holds the GIL between polls, and they need it (ingest fell 1,180 -> 890
        # events/s when it spun). Nor does the worker then: the CPUs are not spare, and its
        # spin takes a core from the HTTP server and its clients.
        spare = len(self._busy) <= self._spin_max and not self.others_busy()
        spin_s = message["spin_s"] = self._spin_s if spare else 0.0
        try:
            protocol.send_until(sock, protocol.encode(message), deadline)
            while True:
                frame = reader.read(deadline, spin_s)
                if frame is None:
                    status, error = self._death(worker, timeout_s)
                    break
                if reader.received - frames_start > frames_budget:
                    raise _Flood("frames")
                op = frame["op"]
                if op == "log":
                    text = frame.get("message")
                    level = frame.get("level")
                    if not isinstance(text, str):
                        raise protocol.ProtocolError("log message is not text")
                    if budget.cut:
                        dropped += line_bytes(text) + _FRAME_OVERHEAD
                        if dropped > _FLOOD_FACTOR * log_cap:
                            raise _Flood("log output")
                        continue
                    if budget.is_marker(text):  # the sandbox cut its log where we would
                        budget.cut = True
                        logs.append(_log("warning", budget.marker))
                        continue
                    kept, cut = budget.admit(text)  # a worker that did not cut: cut it here
                    if kept is not None:
                        logs.append(_log(level if level in LOG_LEVELS else "info", _clean(kept)))
                    if cut:
                        logs.append(_log("warning", budget.marker))
                elif op == "publish":
                    name, data = frame.get("name"), frame.get("data")
                    if not isinstance(name, str) or not (data is None or isinstance(data, str)):
                        raise protocol.ProtocolError("publish needs a name and text data")
                    if not 1 <= len(name) <= settings.event_name_max_chars or (
                        data is not None and _utf8_len(data) > data_cap
                    ):  # the sandbox refuses these: only a compromised worker sends them
                        raise protocol.ProtocolError("event over the name or data limit")
                    if len(events) >= events_cap:
                        dropped += len(name) + len(data or "") + _FRAME_OVERHEAD
                        if dropped > _FLOOD_FACTOR * log_cap:
                            raise _Flood("published events")
                        continue
                    events.append({"name": _clean(name), "data": None if data is None else _clean(data)})
                elif op == "secret":
                    name = frame.get("name")
                    if not isinstance(name, str):
                        raise protocol.ProtocolError("secret request without a name")
                    secret_reads += 1
                    if secret_reads > reads_cap:
                        # Threat: a run (or a compromised worker) reading in a loop until its
                        # deadline: every read is an audit row kept in memory, then stored.
                        reply = {
                            "op": "secret_error",
                            "message": f"this run read secrets {reads_cap:,} times, the limit per run",
                        }
                        dropped += _FRAME_OVERHEAD
                        if dropped > _FLOOD_FACTOR * log_cap:
                            raise _Flood("secret requests")
                    else:  # on_secret (the secrets broker) checks the name against the manifest
                        reply = _answer_secret(on_secret, name)
                    protocol.send_until(sock, protocol.encode(reply), deadline)
                elif op == "ledger":
                    ledger_calls += 1
                    if ledger_calls > ledger_cap:  # each call is a buffered write or a read
                        reply = {
                            "op": "ledger_error",
                            "message": f"this run used ledgers {ledger_cap:,} times, the limit",
                        }
                        dropped += _FRAME_OVERHEAD
                        if dropped > _FLOOD_FACTOR * log_cap:
                            raise _Flood("ledger requests")
                    else:
                        reply = answer_ledger(on_ledger, frame)
                    protocol.send_until(sock, protocol.encode(reply), deadline)
                elif op == "mask":  # logic.mask, one-way; checked again here (masks.py)
                    value = frame.get("value")
                    problem = mask_problem(value, masks)
                    if problem is not None:  # the sandbox refuses these: only a compromised worker sends them
                        raise protocol.ProtocolError(problem)
                    if value not in masks:
                        masks.append(cast(str, value))  # mask_problem found it a str
                elif op == "done":
                    status, result, error = self._finish(frame, worker, job, result_cap)
                    keep = status in ("success", "error")
                    break
                else:
                    raise protocol.ProtocolError(f"unexpected {op!r} frame")
        except TimeoutError:
            worker.kill()
            status = "timeout"
            error = _error("TimeoutError", f"the run exceeded its time limit of {timeout_s:g} s")
        except _Flood as exc:
            worker.kill()
            status = "error"
            error = _error("OutputLimitExceeded", f"the run flooded its {exc} far past the limit and was stopped")
        except protocol.TruncatedFrame:
            status, error = self._death(worker, timeout_s)
        except protocol.ProtocolError as exc:
            worker.kill()
            status = "crashed"
            error = _error("WorkerCrashed", f"the worker broke the protocol: {exc}")
        except OSError:  # EPIPE / ECONNRESET: the worker died under us
            status, error = self._death(worker, timeout_s)
        duration_ms = (time.monotonic() - t0) * 1000.0
        return (
            WorkerResult(
                status=status,
                result=result,
                error=error,
                logs=logs,
                events=events,
                duration_ms=duration_ms,
                worker_pid=worker.pid,
                masks=masks,
            ),
            keep,
        )

    def _finish(self, frame: dict, worker: _Worker, job: Job, result_cap: int) -> tuple[RunStatus, object, dict | None]:
        status = frame.get("status")
        result_json = frame.get("result_json")
        error = frame.get("error")
        if status not in _DONE_FIELDS:
            raise protocol.ProtocolError("done with an unknown status")
        if not (result_json is None or isinstance(result_json, str)):
            raise protocol.ProtocolError("result is not JSON text")
        if error is not None:
            if not isinstance(error, dict):
                raise protocol.ProtocolError("error is not an object")
            if not all(isinstance(error.get(key), (str, type(None))) for key in _ERROR_FIELDS):
                raise protocol.ProtocolError("error fields are not text")  # str() of nested lists recurses
            error = {key: _clean(error.get(key) or "") for key in _ERROR_FIELDS}
        if frame.get("cached") is True:
            worker.versions.add(job.version_key)
        result = None
        if result_json is not None:
            if len(result_json) > result_cap:
                return "error", None, _error("ResultTooLarge", f"the return value is over {result_cap} bytes")
            try:
                result = json.loads(result_json)
            except (ValueError, RecursionError) as exc:
                raise protocol.ProtocolError("result is not valid JSON") from exc
            # The sandbox refuses these (redaction and storage recurse); counting brackets first
            # keeps the walk off every ordinary result.
            if result_json.count("[") + result_json.count("{") > MAX_NESTING and _nested_deeper(result, MAX_NESTING):
                raise protocol.ProtocolError(f"result nested deeper than {MAX_NESTING} levels")
        return status, result, error

    def _death(self, worker: _Worker, timeout_s: float) -> tuple[RunStatus, dict]:
        """Classify a worker that hung up without 'done', by its exit status."""
        status = worker.spawner.wait_exit(worker.pid, 0.5)
        killed_by_us = False
        if status is None:  # the socket closed but the process lingers: end it
            worker.kill()
            killed_by_us = True
            status = worker.spawner.wait_exit(worker.pid, 1.0)
        if status is None:
            return "crashed", _error("WorkerCrashed", "the worker process ended without an answer")
        if status.signal == signal.SIGXCPU or status.code == EXIT_CPU:  # limits.py: SIGXCPU -> _exit(24)
            return "timeout", _error("TimeoutError", f"the run exceeded its CPU time limit of {timeout_s:g} s")
        if status.signal == signal.SIGSYS:  # the seccomp filter killed it (runtime/workers/seccomp.py)
            return "crashed", _error(
                "WorkerCrashed", "the worker made a forbidden system call and was killed (seccomp, SIGSYS)"
            )
        if status.code == EXIT_MEMORY or (status.signal == signal.SIGKILL and not killed_by_us):
            return "memory_exceeded", _error("MemoryError", "the run exceeded its memory limit")
        return "crashed", _error("WorkerCrashed", f"the worker process crashed ({status.describe()})")


def _nested_deeper(value, limit: int) -> bool:
    """Whether a parsed JSON value nests lists/objects deeper than `limit` (no recursion)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            if depth >= limit:
                return True
            stack.extend((item, depth + 1) for item in (node.values() if isinstance(node, dict) else node))
    return False


@functools.lru_cache(maxsize=64)
def _limits_dict(limits) -> dict:
    return dataclasses.asdict(limits)


def _answer_secret(on_secret: Callable[[str], str], name: str) -> dict:
    try:
        value = on_secret(name)
    except LogicError as exc:
        return {"op": "secret_error", "message": exc.message}
    except SecretAccessError as exc:  # its message is safe to show, by contract
        return {"op": "secret_error", "message": str(exc)}
    except Exception as exc:
        log.error("on_secret failed for %s: %s", name, type(exc).__name__)
        return {"op": "secret_error", "message": f"secret {name} could not be read"}
    if not isinstance(value, str):
        return {"op": "secret_error", "message": f"secret {name} could not be read"}
    return {"op": "secret", "value": value}


def answer_ledger(on_ledger: OnLedger | None, frame: dict) -> dict:
    """The parent's answer to a worker's ledger frame (the fields are checked here, the
    owner, name and size by `on_ledger`)."""
    action, name, data_json, mode = (frame.get(k) for k in ("action", "name", "data_json", "mode"))
    if action not in ("get", "set", "delete") or not isinstance(name, str):
        raise protocol.ProtocolError("ledger request without an action and a name")
    if not (data_json is None or isinstance(data_json, str)) or not (mode is None or isinstance(mode, str)):
        raise protocol.ProtocolError("ledger data is not JSON text")
    if on_ledger is None:
        return {"op": "ledger_error", "message": "ledgers cannot be used in this run"}
    try:
        value = on_ledger(action, name, data_json, mode)
    except LogicError as exc:
        return {"op": "ledger_error", "message": exc.message}
    except LedgerError as exc:  # its message is safe to show, by contract
        return {"op": "ledger_error", "message": str(exc)}
    except Exception as exc:
        log.error("on_ledger failed for %s: %s", name[:40], type(exc).__name__)
        return {"op": "ledger_error", "message": f"ledger {name[:40]} could not be used"}
    return {"op": "ledger", "value": value}


def _now() -> str:
    return now_iso()  # the store's one time format, like every other time in a record


def _log(level: str, message: str) -> dict:
    return {"at": _now(), "level": level, "message": message}


def _error(kind: str, message: str) -> dict:
    return {"type": kind, "message": message, "traceback": ""}


def _utf8_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _clean(text: str) -> str:
    """Lone surrogates (valid in JSON escapes, invalid UTF-8) become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
