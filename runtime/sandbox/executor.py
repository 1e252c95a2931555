"""Running a compiled Logic function: one call, fresh globals, an outcome that never raises.

    compile_function(source, ...) -> CompiledFunction    (deploy; raises DeployError)
    run_function(fn, context, host, declared_secrets=..., limits=...) -> RunOutcome

Each run gets new globals (the guards, a copy of the builtins with the run's
`__import__`, `setattr`, `delattr`), executes the module code, then calls the
entry with the context parts it names (built once, before the module code
runs: `logic.get_context()` returns the same objects). Whatever user code
does — raise anything including SystemExit, recurse, return something odd — ends as a
`RunOutcome`; MemoryError becomes status "memory_exceeded". Logs and events
go to the `Host` as they happen, through a `RunOutput` that enforces the
limits. After the run the output is closed and the globals are cleared.
"""

from __future__ import annotations

import decimal
import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .cbor_module import build_cbor_module
from .compiler import CompiledFunction, compile_function
from .context import Context, SecretAccessError, SecretNotDeclared, Secrets, build_context
from .guards import SHARED_BUILTINS, SHARED_GUARDS, class_factory, make_setattr, make_write_guard
from .ledger import LedgerError, ledger_opener
from .logic_module import build_logic_module
from .masks import Masker
from .modules import make_importer
from .output import OutputClosed, RunOutput
from .results import dumps_exact
from .tracebacks import describe_exception

if TYPE_CHECKING:  # the worker side never imports the store's settings: only their values arrive
    from store.settings import Settings

__all__ = [
    "CompiledFunction",
    "Host",
    "LedgerError",
    "RunLimits",
    "RunOutcome",
    "SecretAccessError",
    "SecretNotDeclared",
    "compile_function",
    "run_function",
]


class Host(Protocol):
    """What the sandbox calls back into (the worker forwards each call to the parent)."""

    def read_secret(self, name: str) -> str: ...  # raises SecretAccessError(msg), msg safe to show

    def log(self, level: str, message: str) -> None: ...  # level: "info" | "warning" | "error"

    def publish(self, name: str, data: str | None) -> None: ...

    # action "get" | "set" | "delete"; raises LedgerError(msg), msg safe to show
    def ledger(self, action: str, name: str, data_json: str | None, mode: str | None) -> dict: ...

    def mask(self, value: str) -> None: ...  # logic.mask: one-way; the parent masks it (masks.py)


@dataclass(frozen=True)
class RunLimits:
    """A run's output limits, from the operator's settings (the engine builds them; the
    worker cannot import settings). No defaults: a forgotten limit is an error, not 64."""

    log_max_bytes: int  # then one truncation marker line, then nothing
    result_max_bytes: int
    events_max: int
    event_data_max_bytes: int
    event_name_max_chars: int
    ledger_max_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RunLimits:
        """Every cap the pool enforces must reach the sandbox too, or a run that merely goes
        over one (say, event data under a lowered operator limit) ends as "crashed"."""
        return cls(
            log_max_bytes=settings.log_max_bytes,
            result_max_bytes=settings.result_max_bytes,
            events_max=settings.events_per_run_max,
            event_data_max_bytes=settings.event_data_max_bytes,
            event_name_max_chars=settings.event_name_max_chars,
            ledger_max_bytes=settings.ledger_max_bytes,
        )


@dataclass
class RunOutcome:
    status: Literal["success", "error", "memory_exceeded"]
    result_json: str | None  # json.dumps of the return value (exact JSON types only)
    error: dict | None  # {"type", "message", "traceback"} user lines only


_MODULE_NAME = "logic_function"


def run_function(
    fn: CompiledFunction,
    context: dict,
    host: Host,
    *,
    declared_secrets: Sequence[str],
    limits: RunLimits,
) -> RunOutcome:
    """Run `fn` once; never raises for anything user code does."""
    output = RunOutput(
        host, limits.log_max_bytes, limits.events_max, limits.event_data_max_bytes, limits.event_name_max_chars
    )
    env: dict[str, Any] = {}
    try:
        parts = build_context(context or {}, Secrets(tuple(declared_secrets), _secret_reader(host, output)))
        env = _new_globals(output, parts, limits, host)
        exec(fn.code, env)
        entry = env.get(fn.entry)
        if not callable(entry):
            raise TypeError(f"entry point {fn.entry!r} is not a function")
        value = entry(**{name: getattr(parts, name) for name in fn.params})
        return RunOutcome("success", dumps_exact(value, limits.result_max_bytes), None)
    except MemoryError as exc:
        return _memory_exceeded(exc)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit from user code included
        try:
            return RunOutcome("error", None, describe_exception(exc, fn.filename, fn.source_lines))
        except MemoryError as again:
            return _memory_exceeded(again)
        except BaseException:
            return RunOutcome("error", None, {"type": type(exc).__name__, "message": "", "traceback": ""})
    finally:
        output.close()
        builtins = env.get("__builtins__")
        env.clear()  # drop the run's objects now; finalizers find the output closed
        # Threat: the run's code running again during a later run (a generator's
        # `finally` or a paused `with` finalised late). Its functions keep this run's
        # builtins dict: empty it, so late code has neither guards nor builtins; then
        # collect the run's reference cycles now, while this run is still the one in
        # progress, not at some later run's garbage collection. Cheap in a worker:
        # the zygote froze the warm heap (gc.freeze), so only post-fork objects are walked.
        if type(builtins) is dict:
            builtins.clear()
        gc.collect()
        decimal.setcontext(decimal.Context())  # whatever the run (or its finalizers) left current


def _new_globals(output: RunOutput, parts: Context, limits: RunLimits, host: Host) -> dict[str, Any]:
    run_classes: set[type] = set()
    write_guard = make_write_guard(run_classes)
    builtins = SHARED_BUILTINS.copy()
    # One per run (it counts the run's masks); host.mask is looked up only when called.
    masker = Masker(lambda value: host.mask(value), alive=lambda: not output.closed)
    run_modules = {
        "logic": lambda: build_logic_module(
            output, parts, ledger_opener(host, lambda: not output.closed, limits.ledger_max_bytes), masker
        ),
        "cbor": lambda: build_cbor_module(limits.event_data_max_bytes),  # a payload is at most one event
    }
    builtins["__import__"] = make_importer(run_modules, alive=lambda: not output.closed)
    builtins["setattr"], builtins["delattr"] = make_setattr(write_guard)
    env = SHARED_GUARDS.copy()
    env["__builtins__"] = builtins
    env["__name__"] = _MODULE_NAME
    env["__metaclass__"] = class_factory(run_classes)
    env["_write_"] = write_guard
    env["_print_"] = output.printer
    return env


def _secret_reader(host: Host, output: RunOutput):
    def read(name: str) -> str:
        if output.closed:
            raise OutputClosed("this run has ended; secrets can no longer be read")
        return host.read_secret(name)

    return read


def _memory_exceeded(exc: MemoryError) -> RunOutcome:
    return RunOutcome(
        "memory_exceeded",
        None,
        {
            "type": "MemoryError",
            "message": "the run ran out of memory",
            "traceback": "",
        },
    )
