"""Isolated worker processes: zygote, worker child loop, and the parent-side pool."""

from runtime.workers.job import Job, WorkerResult
from runtime.workers.pool import WorkerPool
from runtime.workers.spawner import WorkerUnavailable

__all__ = ["Job", "WorkerPool", "WorkerResult", "WorkerUnavailable"]
