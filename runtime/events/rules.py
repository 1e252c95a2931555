"""The rules for an event: its name, its data, hook responses, chain depth.

Each rule is written here once and reads its setting; every door that
accepts an event or a subscription (publish, a run's `logic.publish`, a
manifest's event trigger, a webhook's event prefix, a hook's response)
calls it. The sandbox and the worker pool enforce the same limits again on
their side of the process boundary (defence in depth), from the same
settings passed down in `RunLimits`.
"""

from __future__ import annotations

from store.backend import check_text
from store.errors import InvalidInput, TooLarge
from store.settings import Settings

HOOK_RESPONSE_PREFIX = "hook-response/"
HOOK_ERROR_PREFIX = "hook-error/"
HOOK_SENT_PREFIX = "hook-sent/"
HOOK_PREFIXES = (HOOK_RESPONSE_PREFIX, HOOK_ERROR_PREFIX, HOOK_SENT_PREFIX)
HOOK_SOURCE_PREFIX = "integration:"  # the source of every event a webhook publishes: integration:<name>
# The source of the synthetic event a ledger change is delivered as (bus.ledger_changed):
# no publisher can choose a source, so no published event passes for a ledger change.
LEDGER_SOURCE = "ledger"


def fires_webhooks(name: str, source: str) -> bool:
    """Never for an event a webhook published (Particle: webhooks "cannot be chained"): known
    by its name, or by its source for a custom `responseTopic`. So no webhook can loop."""
    return not name.startswith(HOOK_PREFIXES) and not source.startswith(HOOK_SOURCE_PREFIX)


def event_name_problem(name: object, settings: Settings, *, from_hook: bool = False) -> str | None:
    """Why `name` is not a valid event name (or trigger/prefix), or None.

    `from_hook`: a webhook's response event may exceed the limit by its `hook-...` prefix."""
    limit = settings.event_name_max_chars
    if from_hook and isinstance(name, str) and name.startswith(HOOK_PREFIXES):
        limit += len(HOOK_RESPONSE_PREFIX)
    if not isinstance(name, str) or not (1 <= len(name) <= limit):
        return f"event name must be 1-{settings.event_name_max_chars} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "event name must not contain control characters"
    if any("\ud800" <= c <= "\udfff" for c in name):  # no driver can encode one: a 500, before this
        return "event name is not valid UTF-8 text (it holds a lone surrogate)"
    return None


def check_event(name: object, data: object, settings: Settings, *, from_hook: bool = False) -> None:
    """InvalidInput or TooLarge for an event the bus must not accept."""
    problem = event_name_problem(name, settings, from_hook=from_hook)
    if problem is not None:
        raise InvalidInput(problem)
    if data is None:
        return
    if not isinstance(data, str):
        raise InvalidInput("event data must be a string or null")
    # Refused on every backend alike, before a group commit (one bad publish must not fail
    # the others' batch): PostgreSQL's text cannot hold a NUL, no driver encodes a lone surrogate.
    check_text(data, "event data")
    size = len(data.encode("utf-8"))
    if size > settings.event_data_max_bytes:
        raise TooLarge(f"event data is {size} bytes; the limit is {settings.event_data_max_bytes} bytes")


def within_chain(depth: int, settings: Settings) -> bool:
    """Whether an event at chain `depth` may still be delivered (a run's or a hook's
    events are one deeper than what triggered them; the limit ends loops)."""
    return depth <= settings.chain_depth_max


def chain_limit_problem(count: int, settings: Settings) -> str:
    return (
        f"event chain depth limit of {settings.chain_depth_max} reached: "
        f"the {count} event(s) this run published were not delivered"
    )


def ledger_chain_problem(names: list[str], settings: Settings) -> str:
    return (
        f"event chain depth limit of {settings.chain_depth_max} reached: the change of ledger(s) "
        f"{', '.join(names)} was saved but triggers no function"
    )


def undelivered(name: object, reason: str) -> str:
    """The problem noted on a run for one of its events that was not delivered."""
    return f"event {str(name)[:UNDELIVERED_NAME_SHOWN]!r} not delivered: {reason}"


UNDELIVERED_NAME_SHOWN = 64  # characters of a refused event's name quoted in the run's error
