"""The engine: turns a trigger into a run and a stored, redacted run record.

One run: build the context (the owner's environment variables read now: a
change takes effect on the next run), hand the job to a worker of the
function's owner, answer its secret reads and ledger calls through the
brokers, then -- in the parent -- redact everything that came back and
commit the record, the secret accesses, any published events and, for a run
that succeeded, its ledger writes in one transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

from runtime.events.rules import chain_limit_problem, check_event, ledger_chain_problem, undelivered, within_chain
from runtime.events.streams import RUNS, Item, Streams
from runtime.execution.ledger_broker import LedgerBroker
from runtime.execution.redactor import Redactor, masking_cost
from runtime.execution.secrets_broker import SecretsBroker, audited
from runtime.execution.trigger_input import TriggerInput
from runtime.sandbox.executor import RunLimits
from runtime.sandbox.output import LOG_CUT_PREFIX
from runtime.sandbox.tracebacks import MESSAGE_CUT
from runtime.workers.job import Job, WorkerResult
from runtime.workers.pool import Pool
from store import Store
from store.clock import iso, utcnow
from store.errors import LogicError, NotFound
from store.functions import FunctionRecord
from store.ledgers import LedgerChange
from store.sensitive import MASK, Sensitive

_NOTHING_READ = Redactor(())  # a run that read no secret has nothing to mask

# Called inside the run's transaction: (owner, redacted events, their chain depth, run id);
# returns a problem for each event it refused (a full queue).
EventSink = Callable[[str, list[dict[str, Any]], int, str], list[str]]
# Called inside the run's transaction with its committed ledger changes and their chain
# depth; returns a problem for each change whose deliveries it refused (a full queue).
LedgerSink = Callable[[list[LedgerChange], int], list[str]]
# Runs the run's writes (a callable returning the stored record) in a transaction and returns
# what it returned: the delivery threads hand it to the group commit (publish_writer.py).
Committer = Callable[[Callable[[], dict[str, Any]]], dict[str, Any]]


class Engine:
    """Runs function versions on a worker pool and stores their redacted records."""

    def __init__(
        self,
        store: Store,
        pool: Pool,
        *,
        event_sink: EventSink | None = None,
        ledger_sink: LedgerSink | None = None,
        streams: Streams | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = store.settings
        self.store = store
        self.pool = pool
        self.clock = clock
        self.event_sink = event_sink  # the event bus's publish_from_run; None: events are not delivered
        self.ledger_sink = ledger_sink  # the bus's ledger_changes_from_run; None: ledger changes trigger nothing
        self.streams = streams  # stored run records go to the owner's live run streams
        self._limits = RunLimits.from_settings(store.settings)

    def run(
        self,
        fn: FunctionRecord,
        trigger: dict[str, Any],
        *,
        event: dict[str, Any] | None = None,
        scheduled: dict[str, Any] | None = None,
        ledger_change: dict[str, Any] | None = None,
        depth: int = 0,
        persist: bool = True,
        on_commit: Callable[[str], None] | None = None,
        on_start: Callable[[], None] | None = None,
        replay_of: str | None = None,
        mask_also: Sequence[Sensitive] = (),
        commit: Committer | None = None,
    ) -> dict[str, Any]:
        """Run one version of a function; returns the redacted run record.

        `depth` is the event chain depth of the triggering event; `on_commit`
        runs inside the record's transaction (a delivery closes with its run);
        `on_start` once a worker is reserved (a delivery renews its lease);
        `replay_of` the run whose input this one replays (see trigger_input.py);
        `mask_also` values to mask besides those the run reads (a replay: the values its
        first run masked, which the input may hold though this run reads other ones);
        `commit` runs the record's writes in a transaction of its choosing (default: one
        of its own), which may roll back and run them again (they start from a copy).
        """
        run_id = uuid.uuid4().hex
        manifest = fn.manifest
        declared = tuple(manifest.get("secrets", []))
        consumer_id = fn.id if persist else "test-run"
        broker = SecretsBroker(
            self.store.secrets,
            owner=fn.owner,
            declared=declared,
            consumer_kind="logic_function",
            consumer_id=consumer_id,
            consumer_name=fn.name,
            run_id=run_id,
            bytes_max=self.settings.secret_bytes_per_run_max,
            masking_max=self.settings.masking_bytes_per_run_max,
        )
        ledgers = LedgerBroker(self.store.ledgers, owner=fn.owner)
        triggered_at = iso(self.clock())
        context = {
            "event": event,
            "scheduled": scheduled,
            "trigger": {"type": trigger["type"], "triggered_at": triggered_at, "event_id": trigger.get("event_id")},
            "function_info": {"id": fn.id, "name": fn.name, "version": fn.version, "owner": fn.owner},
            "env": self.store.environment.values(fn.owner),
            "ledger_change": ledger_change,
        }
        limits = manifest.get("limits") or {}
        job = Job(
            owner=fn.owner,
            version_key=fn.version_key if persist else _test_key(fn),
            source=fn.source,
            filename=f"{fn.name}.py",
            entry=manifest.get("entry", "main"),
            declared_secrets=declared,
            context=context,
            timeout_s=limits.get("timeout_s"),  # the pool caps both at the operator's limits
            memory_mb=limits.get("memory_mb"),
            limits=self._limits,
        )
        started = self.clock()
        with audited(self.store.secrets, broker.accesses):  # even when the run cannot finish
            outcome = self.pool.run(job, broker.read, on_start, ledgers.call)
        finished = self.clock()
        values = broker.plain_values() + [v.reveal() for v in mask_also]
        if outcome.masks and masking_cost([*values, *outcome.masks]) > self.settings.masking_bytes_per_run_max:
            outcome = _withheld(outcome)  # fail closed: nothing the masks were to hide goes out
        # logic.mask values join the secrets read: the parent masks them in the whole record,
        # also in what the run wrote before it called mask (one redaction, after the run).
        values += outcome.masks
        redactor = Redactor.for_values(values) if values else _NOTHING_READ
        trigger_input = TriggerInput(trigger["type"], trigger.get("event_id"), event, scheduled, ledger_change)
        record = {
            "id": run_id,
            "function_id": fn.id,
            "function_version": fn.version,
            "trigger": redactor.redact_json(trigger_input.displayed()),
            "status": outcome.status,
            "started_at": iso(started),
            "finished_at": iso(finished),
            "duration_ms": round(outcome.duration_ms, 3),
            "logs": redactor.redact_json(outcome.logs),
            "result": redactor.redact_json(outcome.result),
            "error": redactor.redact_json(outcome.error),
            "secrets_accessed": broker.names_read,
            "events_published": redactor.redact_json(outcome.events),
            "replay_of": replay_of,
        }
        _mask_cut_tails(record, redactor)
        deliverable = self._check_events(record, depth) if persist else []

        def write() -> dict[str, Any]:
            """The record, its accesses, events and ledger writes, in the caller's transaction."""
            stored = {**record, "logs": list(record["logs"])}  # problems noted below: a copy per try
            if persist:
                if stored["status"] == "success" and ledgers.pending:
                    self._commit_ledgers(stored, ledgers, redactor, depth)
                if self.event_sink is not None and deliverable:
                    _note_problems(stored, self.event_sink(fn.owner, deliverable, depth + 1, run_id))
                try:
                    self.store.functions.add_run(stored, owner=fn.owner, trigger_input=trigger_input.to_json())
                except NotFound:
                    raise NotFound(f"function {fn.name} was deleted while it ran") from None
                if self.streams is not None:
                    streams, item = self.streams, Item(RUNS, fn.id, stored)
                    self.store.after_commit(lambda: streams.publish(fn.owner, item))
            self.store.secrets.record_access(broker.accesses)
            if on_commit is not None:
                on_commit(run_id)
            return stored

        # Every secret handed out is audited, even when the run's record cannot be stored.
        with audited(self.store.secrets, broker.accesses):
            if commit is not None:
                return commit(write)
            with self.store.transaction():
                return write()

    def _commit_ledgers(self, record: dict[str, Any], ledgers: LedgerBroker, redactor: Redactor, depth: int) -> None:
        """The run's ledger writes, masked, then the functions their changes trigger (one
        deeper in the chain than this run, like its events)."""
        changes, problems = ledgers.commit(redactor)
        _note_problems(record, problems)
        if not changes or self.ledger_sink is None:
            return
        if not within_chain(depth + 1, self.settings):
            record["logs"].append(
                {
                    "at": record["finished_at"],
                    "level": "warning",
                    "message": ledger_chain_problem([c.name for c in changes], self.settings),
                }
            )
            return
        _note_problems(record, self.ledger_sink(changes, depth + 1))

    def _check_events(self, record: dict[str, Any], depth: int) -> list[dict[str, Any]]:
        """The published events that may be delivered; the others turn the run into an error."""
        events = record["events_published"]
        if not events:
            return []
        problems = []
        if not within_chain(depth + 1, self.settings):
            problems.append(chain_limit_problem(len(events), self.settings))
            events = []
        deliverable = []
        for event in events:
            try:
                check_event(event.get("name"), event.get("data"), self.settings)
                deliverable.append(event)
            except LogicError as exc:
                problems.append(undelivered(event.get("name"), exc.message))
        _note_problems(record, problems)
        return deliverable


def _withheld(outcome: WorkerResult) -> WorkerResult:
    """The outcome of a run whose masks cost too much to apply: an error, and nothing else
    of what it wrote (threat: many long multi-line masks making the parent build a huge
    redactor; the secrets broker refuses reads past the same budget)."""
    message = (
        "the values this run passed to logic.mask would take more memory to mask than one run may use; "
        "its logs, result and events were withheld (mask fewer values, or values with fewer lines)"
    )
    return dataclasses.replace(
        outcome,
        status="error",
        result=None,
        error={"type": "MaskLimitExceeded", "message": message, "traceback": ""},
        logs=[],
        events=[],
        masks=[],
    )


def _note_problems(record: dict[str, Any], problems: list[str]) -> None:
    """Undelivered events make a successful run an error, or add a log line to a failed one."""
    if not problems:
        return
    if record["status"] == "success":
        record["status"] = "error"
        record["error"] = {"type": "EventError", "message": "; ".join(problems), "traceback": ""}
    else:
        record["logs"].append({"at": record["finished_at"], "level": "error", "message": "; ".join(problems)})


# Where a limit cut a text, the sandbox wrote a marker: a log line starting with
# LOG_CUT_PREFIX after the cut line (sandbox or pool, output.py), and MESSAGE_CUT in place
# of the rest of a long exception message (tracebacks.py).


def _mask_cut_tails(record: dict[str, Any], redactor: Redactor) -> None:
    """Mask the text just before every cut, as far back as the longest encoded form reaches.

    Threat: a log line or an exception message cut at its limit in the middle of a
    secret (or its hex, base64, URL... form). The redactor finds whole forms only, so
    the part before the cut would stay readable. Masking a window wider than any form
    costs a few innocent characters and needs no guess about which encoding was cut.
    """
    window = redactor.longest_match
    if not window:
        return
    logs = record["logs"]
    for before, line in pairwise(logs):
        if line.get("message", "").startswith(LOG_CUT_PREFIX):
            before["message"] = _mask_tail(before["message"], window)
    error = record["error"]
    if error:
        for key in ("message", "traceback"):
            text = error.get(key)
            if isinstance(text, str):
                out, pos = [], 0
                for cut in MESSAGE_CUT.finditer(text):
                    out += [_mask_tail(text[pos : cut.start()], window), cut.group(0)]
                    pos = cut.end()
                error[key] = "".join(out) + text[pos:]


def _mask_tail(text: str, window: int) -> str:
    """`text` with its last `window` characters (up to a preceding mask) replaced by one MASK."""
    keep = max(0, len(text) - window)
    head = text[:keep]
    if MASK in text[keep:]:  # never split an existing marker: start the mask after it
        head = text[: text.rindex(MASK) + len(MASK)]
    return head + MASK if head != text else text


def _test_key(fn: FunctionRecord) -> str:
    """Test runs are cached by content: the same source compiles once per worker."""
    key = f"{fn.name}\0{fn.manifest.get('entry', 'main')}\0{fn.source}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"test:{digest}"
