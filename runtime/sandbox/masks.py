"""`logic.mask(value)`: a value the function derived, masked like a secret from then on.

    import hmac, logic

    def main(event, secrets):
        signature = hmac.new(secrets.KEY.encode(), event.data.encode(), "sha256").hexdigest()
        logic.mask(signature)
        logic.log.info("signed", signature)     # the run log shows [[SENSITIVE]]

Like GitHub's `::add-mask::`. The worker only reports the value (a one-way
frame); the parent adds it to the values it redacts the run's record with, so
the value and its encodings (the same set as a secret's: base64 at every
offset, URL, JSON, hex...) become `[[SENSITIVE]]` in the logs, result, error
and published events -- also in what the run wrote before the call, since the
parent redacts the whole record once the run has ended. The mask itself is
never stored.

The rules live here because both sides apply them: the sandbox raises
`MaskError` into the function (the author learns why), and the parent checks
every mask frame again, since a compromised worker would skip the sandbox; a
frame the sandbox would have refused is a protocol violation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

# The redactor's short-value rule (runtime/execution/redactor.py MIN_VALUE_CHARS; a test
# pins them together): a shorter value would mask ordinary text and protect nothing.
MASK_MIN_CHARS = 4
# DESIGN's limit per run (like DECLARED_SECRETS_MAX, fixed: the sandbox has no settings).
MASKS_PER_RUN_MAX = 50
# A mask is secret-like: at most a secret value's size (settings.secret_value_max_bytes).
MASK_MAX_BYTES = 64 * 1024


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class MaskError(ValueError):
    """`logic.mask` refused a value; the message says why (and never quotes the value)."""


def mask_problem(value: Any, masked: Collection[str]) -> str | None:
    """Why `value` cannot be masked in a run that masked `masked` already; None if it can."""
    if type(value) is not str:
        return f"logic.mask() takes str, not {type(value).__name__} (mask the text the run will write)"
    if value in masked:
        return None  # masked already: costs nothing more
    if len(value) < MASK_MIN_CHARS:
        return (
            f"logic.mask(): the value is {len(value)} characters; values shorter than {MASK_MIN_CHARS} "
            "characters are never masked (they would hide ordinary text and protect nothing)"
        )
    if value.isascii():
        size = len(value)
    else:
        size = len(value.encode("utf-8", "surrogatepass"))
        if _has_lone_surrogate(value):
            # Threat: the parent writes such text as "?" in logs, events and errors (it is
            # no UTF-8), so the value as given would not match what is shown, and its URL
            # and hex forms cannot even be built (the run's redaction would fail).
            return (
                "logic.mask(): the value is not valid Unicode text (it holds a lone surrogate "
                "character, which no output can carry)"
            )
    if size > MASK_MAX_BYTES:
        return f"logic.mask(): the value is {size:,} bytes; the limit is {MASK_MAX_BYTES:,} bytes"
    if len(masked) >= MASKS_PER_RUN_MAX:
        return f"logic.mask(): a run may mask at most {MASKS_PER_RUN_MAX} values"
    return None


class Masker:
    """`logic.mask` of one run: check, then tell the host (the parent) once per value."""

    __slots__ = ("_send", "_alive", "_masked")

    def __init__(self, send: Callable[[str], None], alive: Callable[[], bool]):
        self._send = send
        self._alive = alive
        # Kept in the worker, which holds the values anyway; the parent keeps its own set.
        self._masked: set[str] = set()

    def __call__(self, value: Any) -> None:
        if not self._alive():
            raise MaskError("logic.mask(): this run has ended")
        if isinstance(value, str) and type(value) is not str:
            value = str.__str__(value)  # an exact copy (threat: a str subclass's methods run user code)
        problem = mask_problem(value, self._masked)
        if problem is not None:
            raise MaskError(problem) if isinstance(value, str) else TypeError(problem)
        if value in self._masked:
            return
        self._masked.add(value)
        self._send(value)
