"""`logic.ledger(name)`: a function's handle on one of its owner's ledgers.

    ledger = logic.ledger("counters")
    ledger.get()            -> {"updated_at": str | None, "data": dict}
    ledger.set(data, mode=logic.REPLACE)    # or logic.MERGE: replaces top-level keys
    ledger.delete()         # the data, not the ledger

Every call is one request to the parent (Host.ledger), which checks the owner,
the name and the size and buffers the write: the writes commit with the run's
record, so a run that fails writes nothing. A refused call raises
LedgerError (its message is safe to show), which the function may catch.
The data crosses as exact JSON (`dumps_exact`): a user subclass never runs
host code while it is serialised.
"""

from __future__ import annotations

import json
from typing import Any

from .output import OutputClosed, exact_str
from .results import ResultError, dumps_exact

REPLACE = "replace"
MERGE = "merge"
_MODES = (REPLACE, MERGE)


class LedgerError(Exception):
    """A ledger call the parent refused (unknown ledger, too large, too many calls...)."""


class Ledger:
    """One ledger of the run's owner; only `get`, `set`, `delete` and `name`."""

    __slots__ = ("_name", "_call", "_max_bytes")
    _name: str
    _call: Any
    _max_bytes: int

    def __init__(self, name: str, call: Any, max_bytes: int):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "_max_bytes", max_bytes)

    @property
    def name(self) -> str:
        return self._name

    def get(self) -> dict[str, Any]:
        value = self._call("get", self._name, None, None)
        return {"updated_at": value.get("updated_at"), "data": value.get("data") or {}}

    def set(self, data: Any, mode: str = REPLACE) -> None:
        mode = exact_str(mode, "mode")
        if mode not in _MODES:
            raise ValueError(f"mode must be logic.REPLACE or logic.MERGE, not {mode!r}")
        if not isinstance(data, dict):
            raise TypeError(f"ledger data must be a dict, not {type(data).__name__}")
        try:  # JSON escapes grow text up to 6x: the parent's check (UTF-8 bytes) is the real one
            text = dumps_exact(data, 6 * self._max_bytes, "ledger data")
        except ResultError as exc:
            raise LedgerError(str(exc)) from None
        self._call("set", self._name, text, mode)

    def delete(self) -> None:
        self._call("delete", self._name, None, None)

    def __repr__(self) -> str:
        return f"<ledger {self._name!r}>"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a ledger handle is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a ledger handle is read-only")

    def __reduce__(self):
        raise TypeError("a ledger handle cannot be serialised")


def ledger_opener(host: Any, alive: Any, max_bytes: int):
    """`logic.ledger` of one run: handles that call `host.ledger` while the run is alive."""

    def call(action: str, name: str, data_json: str | None, mode: str | None) -> dict[str, Any]:
        if not alive():
            raise OutputClosed("this run has ended; ledgers can no longer be used")
        answer = host.ledger(action, name, data_json, mode)
        # A fresh copy each time: the function may change what it got without touching the
        # pending write the parent keeps (and the parent's answer is JSON anyway).
        return json.loads(json.dumps(answer)) if isinstance(answer, dict) else {}

    def ledger(name: Any) -> Ledger:
        return Ledger(exact_str(name, "ledger names"), call, max_bytes)

    return ledger
