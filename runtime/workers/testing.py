"""InProcessPool: the worker pool's test double (like `RecordingHost` beside the worker's Host).

`InProcessPool(settings)` has what the engine uses of `WorkerPool` (the `Pool`
protocol): `run(job, on_secret, on_start=None) -> WorkerResult`, `close()`, the
`others_busy` attribute, and `with`. It compiles and runs each job in the calling
thread with `runtime.sandbox.executor.run_function`, behind a Host that does
at once what the pool does with a worker's frames: it forwards `secrets.X`
reads to `on_secret` (declared names only, at most `secret_reads_per_run_max`),
stamps and caps log lines (the same LogBudget and marker), caps events, caps
the result, and builds the same WorkerResult: status success / error /
memory_exceeded / timeout, the same error, log and event shapes. Like the pool
it caps the runs in flight (`workers`, and `owner_runs_max` per owner: further
runs wait) and calls `on_start` once a run has its slot.

What it does NOT do: there is no process, so no isolation (no rlimits, no
network namespace, no uid), no memory limit (a MemoryError is the sandbox's
own "memory_exceeded"), no crash status, and no kill at the deadline. A run
that overstays its time limit ends "timeout" only when it returns, or when it
next logs, publishes or reads a secret after the deadline (that call raises
and unwinds it): a function that loops forever without calling out is never
stopped. Tests of workers, limits, isolation, timeouts or crashes use the real
`WorkerPool`.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from runtime.sandbox.executor import LedgerError, SecretAccessError, compile_function, run_function
from runtime.sandbox.masks import mask_problem
from runtime.sandbox.output import LogBudget
from runtime.workers.job import Job, WorkerResult
from runtime.workers.pool import OnLedger, _clean, _error, _log, answer_ledger  # the pool's shapes: no drift
from store.errors import LogicError, WorkerUnavailable

if TYPE_CHECKING:
    from runtime.workers.job import RunStatus
    from store.settings import Settings

_LOG_LEVELS = frozenset({"info", "warning", "error"})
_ERROR_FIELDS = ("type", "message", "traceback")


class _DeadlinePassed(BaseException):
    """Raised into a run that calls out after its deadline (the real pool kills the worker)."""


class InProcessPool:
    """Runs jobs in this process, one per calling thread; see the module docstring for what it omits."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._capacity = max(1, int(settings.workers))
        self._owner_cap = max(1, min(self._capacity, int(settings.owner_runs_max)))
        self._in_flight = 0
        self._busy_of: dict[str, int] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.others_busy: Callable[[], bool] = lambda: False  # read by nothing here; set by the server

    def run(
        self,
        job: Job,
        on_secret: Callable[[str], str],
        on_start: Callable[[], None] | None = None,
        on_ledger: OnLedger | None = None,
    ) -> WorkerResult:
        """Run `job` here; `on_start` is called once the run has its slot, right before it starts."""
        self._reserve(job.owner)
        try:
            if on_start is not None:
                on_start()
            return self._execute(job, on_secret, on_ledger)
        finally:
            self._release(job.owner)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> InProcessPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reserve(self, owner: str) -> None:
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerUnavailable("the worker pool is closed")
                if self._in_flight < self._capacity and self._busy_of.get(owner, 0) < self._owner_cap:
                    break
                self._cond.wait()
            self._in_flight += 1
            self._busy_of[owner] = self._busy_of.get(owner, 0) + 1

    def _release(self, owner: str) -> None:
        with self._cond:
            self._in_flight -= 1
            self._busy_of[owner] -= 1
            if not self._busy_of[owner]:
                del self._busy_of[owner]
            self._cond.notify_all()

    def _execute(self, job: Job, on_secret: Callable[[str], str], on_ledger: OnLedger | None) -> WorkerResult:
        settings = self._settings
        limits = job.limits
        timeout_s = min(float(job.timeout_s or settings.run_timeout_s), float(settings.run_timeout_s))
        result_cap = min(limits.result_max_bytes, settings.result_max_bytes)
        t0 = time.monotonic()
        host = _Host(job, on_secret, settings, deadline=t0 + timeout_s, on_ledger=on_ledger)
        status, result, error = self._outcome(job, host, result_cap)
        if host.timed_out or time.monotonic() - t0 > timeout_s:
            status, result = "timeout", None
            error = _error("TimeoutError", f"the run exceeded its time limit of {timeout_s:g} s")
        return WorkerResult(
            status=status,
            result=result,
            error=error,
            logs=host.logs,
            events=host.events,
            duration_ms=(time.monotonic() - t0) * 1000.0,
            worker_pid=os.getpid(),
            masks=host.masks,
        )

    def _outcome(self, job: Job, host: _Host, result_cap: int) -> tuple[RunStatus, object, dict | None]:
        """What a worker's "done" frame would say, read as the pool reads it."""
        settings = self._settings
        try:
            fn = compile_function(
                job.source,
                filename=job.filename,
                entry=job.entry,
                declared_secrets=job.declared_secrets,
                max_bytes=int(settings.source_max_bytes),
                max_depth=int(settings.ast_max_depth),
            )
        except MemoryError:
            return "memory_exceeded", None, _error("MemoryError", "the run exceeded its memory limit")
        except Exception as exc:  # DeployError (or a policy bug), reported as the worker does
            return "error", None, _error(type(exc).__name__, getattr(exc, "message", None) or str(exc))
        context = json.loads(json.dumps(job.context))  # what crosses the socket: a copy, JSON types only
        try:
            with _heap_frozen():
                outcome = run_function(fn, context, host, declared_secrets=job.declared_secrets, limits=job.limits)
        except MemoryError:
            return "memory_exceeded", None, _error("MemoryError", "the run exceeded its memory limit")
        except BaseException as exc:  # run_function promises not to raise; as the worker says if it did
            return "error", None, _error("WorkerError", f"the sandbox failed: {type(exc).__name__}")
        error = outcome.error
        if error is not None:
            error = {key: _clean(error.get(key) or "") for key in _ERROR_FIELDS}
        result = None
        if outcome.result_json is not None:
            if len(outcome.result_json) > result_cap:
                return "error", None, _error("ResultTooLarge", f"the return value is over {result_cap} bytes")
            result = json.loads(outcome.result_json)
        return cast("RunStatus", outcome.status), result, error


class _Host:
    """The sandbox's Host, doing in this process what WorkerPool does with each frame."""

    def __init__(
        self,
        job: Job,
        on_secret: Callable[[str], str],
        settings: Settings,
        *,
        deadline: float,
        on_ledger: OnLedger | None = None,
    ):
        self._job = job
        self._on_secret = on_secret
        self._on_ledger = on_ledger
        self._ledger_calls = 0
        self._ledger_cap = int(settings.ledger_calls_per_run_max)
        self._deadline = deadline
        self._budget = LogBudget(min(job.limits.log_max_bytes, settings.log_max_bytes))
        self._events_cap = min(job.limits.events_max, settings.events_per_run_max)
        self._reads = 0
        self._reads_cap = int(settings.secret_reads_per_run_max)
        self.logs: list[dict] = []
        self.events: list[dict] = []
        self.masks: list[str] = []
        self.timed_out = False

    def _in_time(self) -> None:
        if time.monotonic() >= self._deadline:
            self.timed_out = True
            raise _DeadlinePassed

    def log(self, level: str, message: str) -> None:
        self._in_time()
        budget = self._budget
        if budget.cut:
            return
        if budget.is_marker(message):  # the sandbox cut its log where the pool would
            budget.cut = True
            self.logs.append(_log("warning", budget.marker))
            return
        kept, cut = budget.admit(message)
        if kept is not None:
            self.logs.append(_log(level if level in _LOG_LEVELS else "info", _clean(kept)))
        if cut:
            self.logs.append(_log("warning", budget.marker))

    def publish(self, name: str, data: str | None) -> None:
        self._in_time()
        if len(self.events) < self._events_cap:
            self.events.append({"name": _clean(name), "data": None if data is None else _clean(data)})

    def mask(self, value: str) -> None:
        """As the pool takes a worker's mask frame (the same check)."""
        self._in_time()
        if mask_problem(value, self.masks) is None and value not in self.masks:
            self.masks.append(value)

    def ledger(self, action: str, name: str, data_json: str | None, mode: str | None) -> dict:
        """As the pool answers a worker's ledger frame (the same function)."""
        self._in_time()
        self._ledger_calls += 1
        if self._ledger_calls > self._ledger_cap:
            raise LedgerError(f"this run used ledgers {self._ledger_cap:,} times, the limit")
        frame = {"action": action, "name": name, "data_json": data_json, "mode": mode}
        reply = json.loads(json.dumps(answer_ledger(self._on_ledger, frame)))  # what crosses the socket
        if reply["op"] == "ledger":
            return cast(dict, reply["value"])
        raise LedgerError(reply["message"])

    def read_secret(self, name: str) -> str:
        self._in_time()
        self._reads += 1
        if self._reads > self._reads_cap:
            raise SecretAccessError(f"this run read secrets {self._reads_cap:,} times, the limit per run")
        if name not in self._job.declared_secrets:
            raise SecretAccessError(f"secret {name} is not declared by this function")
        try:
            value = self._on_secret(name)
        except LogicError as exc:
            raise SecretAccessError(exc.message) from None
        except SecretAccessError as exc:
            raise SecretAccessError(str(exc)) from None
        except Exception:
            raise SecretAccessError(f"secret {name} could not be read") from None
        if hasattr(value, "reveal"):  # store.sensitive.Sensitive
            value = value.reveal()
        if not isinstance(value, str):
            raise SecretAccessError(f"secret {name} could not be read")
        return value


_frozen_lock = threading.Lock()
_frozen_runs = 0


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """The heap as it was before the run(s) in flight, frozen (gc.freeze), as in the zygote:
    run_function collects garbage after every run, and only the run's own objects are then
    walked, not the whole test process."""
    global _frozen_runs
    with _frozen_lock:
        if not _frozen_runs:
            gc.freeze()
        _frozen_runs += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_runs -= 1
            if not _frozen_runs:
                gc.unfreeze()
