"""What the entry point receives: read-only context objects and the secrets accessor.

Parameters are chosen by name (`CONTEXT_PARTS`); a part missing from the
run's context is None. Context objects are named tuples: attribute access,
immutable, and the write guard refuses them. `logic.get_context()` returns
the same parts together as one `Context` (the very objects the parameters
get, the secrets accessor included: never a dict of values).

`Env` holds the owner's environment variables as they were when the run
started (plain text, not secret: a change takes effect on the next run).

`Secrets` reads through a callable bound to the run (never cached, so an
update between two reads is seen); the only attributes are `get` and the
declared names (threat: an attribute that leads back to the host or broker).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator
from typing import Any

from .output import exact_str

# The whole context, in the order get_context() lists it; its fields are the parameter names.
Context = namedtuple("Context", "event scheduled trigger function_info secrets env ledger_change")
CONTEXT_PARTS: tuple[str, ...] = Context._fields

Event = namedtuple("Event", "id name data published_at source")
Scheduled = namedtuple("Scheduled", "scheduled_at cron start_at end_at")
Trigger = namedtuple("Trigger", "type triggered_at event_id")
FunctionInfo = namedtuple("FunctionInfo", "id name version owner")
LedgerChange = namedtuple("LedgerChange", "changed_at change_type name data")

_RECORDS: dict[str, type[Event | Scheduled | Trigger | FunctionInfo | LedgerChange]] = {
    "event": Event,
    "scheduled": Scheduled,
    "trigger": Trigger,
    "function_info": FunctionInfo,
    "ledger_change": LedgerChange,
}


def build_part(name: str, context: dict) -> Any:
    """One context part (not secrets nor env) as a read-only record, or None."""
    raw = context.get(name)
    if raw is None:
        return None
    record = _RECORDS[name]
    return record._make([raw.get(field) for field in record._fields])


class SecretAccessError(Exception):
    """Raised by the host when a declared secret cannot be read (message safe to show)."""


class SecretNotDeclared(KeyError, AttributeError):
    """A secret name the function's manifest does not declare."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Secrets:
    """`secrets.NAME`, `secrets["NAME"]`, `secrets.get("NAME", default)`, `"NAME" in secrets`."""

    __slots__ = ("_names", "_read")
    _names: tuple[str, ...]
    _read: Callable[[str], str]

    def __init__(self, names: tuple[str, ...], read: Callable[[str], str]):
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_read", read)

    def _value(self, name: Any) -> str:
        name = exact_str(name, "secret names")
        if name not in self._names:
            declared = ", ".join(self._names) or "none"
            raise SecretNotDeclared(
                f"secret {name!r} is not declared in this function's manifest; declared: {declared}"
            )
        return self._read(name)

    def __getattr__(self, name: str) -> str:
        if name[:1] == "_":  # host-side lookups like copy's __deepcopy__: never a secret
            raise AttributeError(name)
        return self._value(name)

    def __getitem__(self, name: str) -> str:
        return self._value(name)

    def get(self, name: str, default: Any = None) -> Any:
        """The value, or `default` when the declared secret cannot be read right now."""
        try:
            return self._value(name)
        except SecretAccessError:
            return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and exact_str(name, "secret names") in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<secrets: {', '.join(self._names) or 'none declared'}>"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("secrets are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("secrets are read-only")

    def __reduce__(self):  # never pickled across the worker boundary
        raise TypeError("secrets cannot be serialised")


class EnvNotSet(KeyError, AttributeError):
    """An environment variable the owner has not set."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Env:
    """`env.NAME`, `env["NAME"]`, `env.get("NAME", default)`, `"NAME" in env`, iteration over names."""

    __slots__ = ("_values",)
    _values: dict[str, str]

    def __init__(self, values: dict[str, str]):
        object.__setattr__(self, "_values", {str(k): str(v) for k, v in values.items()})

    def _value(self, name: Any) -> str:
        name = exact_str(name, "environment variable names")
        if name not in self._values:
            raise EnvNotSet(f"environment variable {name!r} is not set (set it with `logic env set {name}`)")
        return self._values[name]

    def __getattr__(self, name: str) -> str:
        if name[:1] == "_":  # host-side lookups like copy's __deepcopy__
            raise AttributeError(name)
        return self._value(name)

    def __getitem__(self, name: str) -> str:
        return self._value(name)

    def get(self, name: str, default: Any = None) -> Any:
        name = exact_str(name, "environment variable names")
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and exact_str(name, "environment variable names") in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<env: {', '.join(sorted(self._values)) or 'none set'}>"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("env is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("env is read-only")


def build_context(context: dict, secrets: Secrets) -> Context:
    """Every part of the run's context, built once: the parameters and get_context() share them."""
    parts: list[Any] = []
    for name in CONTEXT_PARTS:
        if name == "secrets":
            parts.append(secrets)
        elif name == "env":
            parts.append(Env(context.get("env") or {}))
        else:
            parts.append(build_part(name, context))
    return Context._make(parts)
