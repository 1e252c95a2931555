"""Exact-JSON serialisation of what user code hands back (return values, event data).

Only dict (str keys), list, tuple, str, int, float (finite), bool and None are
accepted, checked by exact type: a user subclass could run its own methods
while the host serialises it, or pass for a str. The collections dicts
(OrderedDict, defaultdict, Counter) count as dicts: their methods are host code. Cycles and nesting past
`MAX_NESTING` are refused with a clear message, never a crash; the size is
checked while walking so a huge value fails before its JSON is built.
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any

MAX_NESTING = 100

_SCALARS = (str, int, float, bool, type(None))
_DICTS = frozenset({dict, collections.OrderedDict, collections.defaultdict, collections.Counter})
_LISTS = frozenset({list, tuple})
# Built once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(allow_nan=False, check_circular=False, separators=(",", ":"))
_HINTS: dict[type, str] = {
    bytes: " (use logic.encoding.base64_encode or logic.encoding.bytes_to_str)",
    bytearray: " (use logic.encoding.base64_encode or logic.encoding.bytes_to_str)",
    set: " (use a list)",
    frozenset: " (use a list)",
}


class ResultError(ValueError):
    """A value that cannot be sent back as JSON."""


def _path(link: tuple | None) -> str:
    # Paths are linked (parent, key) pairs, rendered only when an error needs them.
    parts = []
    while link is not None:
        link, key = link
        parts.append(f"[{key!r}]")
    return "$" + "".join(reversed(parts))


def dumps_exact(value: Any, max_bytes: int, what: str = "return value") -> str:
    """`json.dumps(value)` after checking it holds exact JSON types only."""
    if type(value) in _SCALARS and type(value) is not float:
        size = len(value) + 2 if type(value) is str else 8
    else:
        size = _check(value, what, max_bytes)
    if size > max_bytes:
        raise ResultError(f"{what} is over {max_bytes} bytes as JSON; the limit is {max_bytes} bytes")
    try:
        text = _ENCODER.encode(value)
    except ValueError:  # the only one left after _check: an int past CPython's digit limit
        raise ResultError(f"{what} holds an int too large to serialise (over 4300 digits); send it as a str") from None
    if len(text) > max_bytes:
        raise ResultError(f"{what} is {len(text)} bytes as JSON; the limit is {max_bytes} bytes")
    return text


def _check(value: Any, what: str, max_bytes: int) -> int:
    size = 0
    active: set[int] = set()  # ids of containers on the current path (a cycle returns to one)

    def walk(node: Any, path: tuple | None, depth: int) -> None:
        nonlocal size
        kind = type(node)
        if kind is str:
            size += len(node) + 2
        elif kind is float:
            if not math.isfinite(node):
                raise ResultError(f"{what} contains {node!r} at {_path(path)}, which JSON cannot represent")
            size += 8
        elif kind in _SCALARS:
            size += 5
        elif kind in _DICTS or kind in _LISTS:
            if depth >= MAX_NESTING:
                raise ResultError(f"{what} is nested deeper than {MAX_NESTING} levels at {_path(path)}")
            if id(node) in active:
                raise ResultError(f"{what} refers to itself at {_path(path)}")
            active.add(id(node))
            size += 2
            if kind in _DICTS:
                for key, item in node.items():
                    if type(key) is not str:
                        raise ResultError(
                            f"{what} has a dict key of type {type(key).__name__!r} at {_path(path)}; "
                            "JSON object keys must be str"
                        )
                    size += len(key) + 4
                    walk(item, (path, key), depth + 1)
            else:
                for index, item in enumerate(node):
                    size += 1
                    walk(item, (path, index), depth + 1)
            active.discard(id(node))
        else:
            raise ResultError(
                f"{what} is not JSON-serialisable: {kind.__name__!r} at {_path(path)}{_HINTS.get(kind, '')}"
            )
        if size > max_bytes:
            raise ResultError(f"{what} is over {max_bytes} bytes as JSON; the limit is {max_bytes} bytes")

    walk(value, None, 0)
    return size
