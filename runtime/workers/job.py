"""What the engine hands the pool (Job) and what it gets back (WorkerResult)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.sandbox.executor import RunLimits

STATUSES = frozenset({"success", "error", "timeout", "memory_exceeded", "crashed"})


@dataclass
class Job:
    owner: str  # "user:alice" / "org:acme"; a worker serves one owner for life
    version_key: str  # cache key for compiled code, e.g. "fn-id:3"
    source: str
    filename: str
    entry: str
    declared_secrets: tuple[str, ...]
    context: dict
    timeout_s: float
    memory_mb: int
    limits: RunLimits


@dataclass
class WorkerResult:
    status: str  # success | error | timeout | memory_exceeded | crashed
    result: Any  # parsed JSON (None if none)
    error: dict | None  # {"type", "message", "traceback"}
    logs: list[dict]  # {"at": iso, "level", "message"}
    events: list[dict]  # {"name", "data"}
    duration_ms: float
    worker_pid: int = 0  # for diagnostics and tests; not part of a run record
