"""What the engine hands the pool (Job) and what it gets back (WorkerResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from runtime.sandbox.executor import RunLimits

# How a run ended; a run record's "status" (plus "error" for a run whose events were refused).
RunStatus = Literal["success", "error", "timeout", "memory_exceeded", "crashed"]


@dataclass
class Job:
    owner: str  # "user:alice" / "org:acme"; a worker serves one owner for life
    version_key: str  # cache key for compiled code, e.g. "fn-id:3"
    source: str
    filename: str
    entry: str
    declared_secrets: tuple[str, ...]
    context: dict[str, Any]
    timeout_s: float | None  # the manifest's limits, if any: the pool caps both at the operator's
    memory_mb: int | None
    limits: RunLimits


@dataclass
class WorkerResult:
    status: RunStatus
    result: Any  # parsed JSON (None if none)
    error: dict[str, Any] | None  # {"type", "message", "traceback"}
    logs: list[dict[str, Any]]  # {"at": iso, "level", "message"}
    events: list[dict[str, Any]]  # {"name", "data"}
    duration_ms: float
    worker_pid: int = 0  # for diagnostics and tests; not part of a run record
    masks: list[str] = field(default_factory=list)  # logic.mask values, checked by the parent; never stored
