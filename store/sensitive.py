"""A wrapper that keeps a secret value out of every repr, str, log and traceback."""

from __future__ import annotations

from typing import NoReturn

MASK = "[[SENSITIVE]]"


class Sensitive:
    """Holds secret text; only `reveal()` gives it back.

    Threat: a value printed by accident (logging an object, an f-string, a
    traceback's locals, pickling into a queue). Every such path shows MASK.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str):
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Sensitive is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Sensitive value cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sensitive) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Sensitive, self._value))

    def __len__(self) -> int:
        return len(self._value)
