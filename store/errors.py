"""Every error logic-runtime raises on purpose, in one tree.

    LogicError                      500  exit 1
     ├── InvalidInput               422  exit 1   bad name, empty value, bad manifest...
     │    └── DeployError           422  exit 1   all problems of one deploy, with lines
     ├── Unauthorized               401  exit 1   missing or unknown API token
     ├── PermissionDenied           403  exit 1   acting on an owner you do not belong to
     ├── NotFound                   404  exit 1
     ├── Conflict                   409  exit 1   duplicate name, deleting a used secret
     ├── TooLarge                   413  exit 1   value, body or event over its limit
     ├── TooManyRequests            429  exit 1   backpressure, with Retry-After: try again later
     │    └── QueueFull                           the owner's (or the server's) delivery queue is full
     ├── WorkerUnavailable          503  exit 1   no worker process could be started
     └── StoreError                 500  exit 1   the store cannot be used as it is
          ├── StoreBusy             503           another process holds the database: retry
          ├── DiskFull              507           no space left on the disk holding LOGIC_HOME
          ├── NotInitialized                      no database yet: run `logic init`
          ├── MasterKeyError                      missing or wrong master key
          ├── SchemaTooNew                        database from a newer logic-runtime
          └── DecryptionError                     a ciphertext was edited or swapped

Each interface has one mapper: the CLI prints `Error: <message>` and exits
with `exit_code`; the HTTP API answers `{"error": <message>}` with `status`
(and a `Retry-After` header where the error has `retry_after`, in seconds).
Messages never contain a secret value. The tree lives in `store` because
`store` imports nothing from `runtime`; it holds runtime errors too.

Errors that user code sees inside the sandbox (SecretAccessError,
SecretNotDeclared, PublishLimitError, OutputClosed, ResultError) are not in
the tree on purpose: they become a run's error, never an interface's answer.
"""

from __future__ import annotations


class LogicError(Exception):
    status = 500
    exit_code = 1
    retry_after: int | None = None  # seconds; the API sends it as Retry-After

    def __init__(self, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidInput(LogicError):
    status = 422


class DeployError(InvalidInput):
    """A deploy refused, with every problem found (each names file and line)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "deploy failed")


class Unauthorized(LogicError):
    status = 401


class PermissionDenied(LogicError):
    status = 403


class NotFound(LogicError):
    status = 404


class Conflict(LogicError):
    status = 409


class TooLarge(LogicError):
    status = 413


class TooManyRequests(LogicError):
    """Backpressure: this caller (an owner, a client address) is over a quota for now."""

    status = 429
    retry_after = 1


class QueueFull(TooManyRequests):
    pass


class WorkerUnavailable(LogicError):
    """No worker could be started (the zygote died or a worker failed to confine)."""

    status = 503


class StoreError(LogicError):
    status = 500


class StoreBusy(StoreError):
    """Another process held the database's write lock past the busy timeout (or this
    process's writers queued that long behind each other): nothing was written."""

    status = 503
    retry_after = 1


class StoreUnreachable(StoreBusy):
    """The database server cannot be reached (PostgreSQL restarting, a network cut): nothing
    was written; the caller retries, as for a busy store."""


class DiskFull(StoreError):
    """The disk holding the database is full (SQLITE_FULL, or an I/O error with next to
    no space left): the transaction was rolled back, nothing was written."""

    status = 507


class NotInitialized(StoreError):
    pass


class LeaseLost(StoreError):
    """A delivery's lease ran out and another claim took it (this node was cut off or
    stalled): whatever this claim wrote for it is rolled back, the new holder carries it out."""

    status = 409


class MasterKeyError(StoreError):
    pass


class SchemaTooNew(StoreError):
    pass


class DecryptionError(StoreError):
    pass


def statuses() -> list[int]:
    """Every HTTP status an error of the tree answers with (the API documents them)."""
    found: set[int] = set()
    pending: list[type[LogicError]] = [LogicError]
    while pending:
        cls = pending.pop()
        found.add(cls.status)
        pending.extend(cls.__subclasses__())
    return sorted(found)
