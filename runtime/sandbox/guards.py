"""Guards: the functions RestrictedPython's rewritten code calls, and the builtins.

`a.b` runs `_getattr_(a, "b")`, `a[b]` runs `_getitem_(a, b)`, `a.b = c` and
`a[b] = c` run `_write_(a)` first, `for x in y` runs `_getiter_(y)`, `x += y`
runs `_inplacevar_("+=", x, y)` and `f(*a, **k)` runs `_apply_(f, *a, **k)`.

Reads: no attribute starting with "_", none in `policy.BLOCKED_ATTRIBUTES`,
nothing at all on frames, tracebacks and code objects, and only exact `str`
names (threat: a str subclass that compares equal to a harmless name).

Writes: only into objects the run created: lists, dicts, sets, bytearrays,
the collections containers, decimal contexts, and instances (and the classes)
of classes the run defined. Shared objects — module facades, the logic
module, the secrets accessor, host classes like `fractions.Fraction` — refuse
every attribute or item assignment and deletion (threat: poisoning state that
the next run in the same worker sees).

Class statements are allowed: RestrictedPython builds them through the
`__metaclass__` global, which `class_factory` provides and which records each
class so the write guard knows it belongs to the run.
"""

from __future__ import annotations

import abc
import builtins
import collections
import decimal
import operator
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safe_builtins,
    safer_getattr,
)
from RestrictedPython.Limits import limited_builtins
from RestrictedPython.Utilities import utility_builtins

from .context import Secrets
from .modules import ModuleFacade
from .policy import BLOCKED_ATTRIBUTES

# Objects whose every attribute leads to interpreter internals.
_OPAQUE_TYPES = frozenset({types.FrameType, types.TracebackType, types.CodeType})

WRITABLE_TYPES = frozenset(
    {
        list,
        dict,
        set,
        bytearray,
        collections.deque,
        collections.defaultdict,
        collections.OrderedDict,
        collections.Counter,
        collections.ChainMap,
        decimal.Context,  # only reachable as a fresh Context() or a localcontext() copy
    }
)


def _exact_name(name: Any) -> str:
    if type(name) is not str:
        raise TypeError("attribute name must be a str, not " + type(name).__name__)
    return name


# (type, name) pairs that passed every check below, for host types whose checks depend
# on nothing but the type and the name (no classes, no run-made types): the hot path of
# `base64.b64decode` or `items.append` in a loop. Only names that exist are remembered,
# so the set is bounded by the attributes of these few types.
_CACHEABLE_TYPES = frozenset({ModuleFacade, str, bytes, bytearray, list, dict, tuple, set, frozenset, int, float})
_PASSED: set[tuple[type, str]] = set()


def guarded_getattr(ob: Any, name: str, default: Any = raise_) -> Any:
    """`_getattr_` and the `getattr` builtin; RestrictedPython's safer_getattr does the final read."""
    kind = type(ob)
    if type(name) is str and (kind, name) in _PASSED:
        return getattr(ob, name) if default is raise_ else getattr(ob, name, default)
    value = _checked_getattr(ob, name, default)
    if kind in _CACHEABLE_TYPES and hasattr(ob, name):
        _PASSED.add((kind, name))
    return value


def _checked_getattr(ob: Any, name: str, default: Any) -> Any:
    _exact_name(name)
    if name[:1] == "_" or name in BLOCKED_ATTRIBUTES:
        raise AttributeError(f'attribute "{name}" is not allowed in Logic functions')
    if type(ob) in _OPAQUE_TYPES:
        raise AttributeError(f"{type(ob).__name__} objects are not accessible in Logic functions")
    if name == "obj" and isinstance(ob, AttributeError):
        # AttributeError.obj may be a host object a stdlib function failed on.
        raise AttributeError('attribute "obj" of AttributeError is not allowed in Logic functions')
    if name == "register" and isinstance(ob, abc.ABCMeta):
        # Threat: cross-run poisoning of process-wide ABC state. ABCMeta.register on an
        # exported ABC (collections.ChainMap, fractions.Fraction) or a run's subclass of
        # one makes e.g. str a virtual MutableMapping for every later run in the worker
        # (Counter("abc") then fails) and caches it in the parent ABC for good.
        raise AttributeError('attribute "register" of an abstract base class is not allowed in Logic functions')
    return safer_getattr(ob, name, default)


def guarded_hasattr(ob: Any, name: str) -> bool:
    try:
        guarded_getattr(ob, name)
    except AttributeError:
        return False
    return True


def _describe(ob: Any) -> str:
    if isinstance(ob, (ModuleFacade, Secrets)):
        return repr(ob)
    if isinstance(ob, type):
        return f"class {ob.__name__!r}"
    return f"a {type(ob).__name__!r} object"


def make_write_guard(run_classes: set[type]) -> Callable[[Any], Any]:
    """`_write_` for one run: returns the object if the run may change it."""

    def write_guard(ob: Any) -> Any:
        kind = type(ob)
        if kind in WRITABLE_TYPES or kind in run_classes or (isinstance(ob, type) and ob in run_classes):
            return ob
        raise TypeError(
            f"cannot change {_describe(ob)}: a Logic function may only change the lists, dicts, "
            "sets and objects of its own classes that it created"
        )

    return write_guard


def make_setattr(write_guard: Callable[[Any], Any]) -> tuple[Callable, Callable]:
    """The `setattr` and `delattr` builtins, through the run's write guard."""

    def guarded_setattr(ob: Any, name: str, value: Any) -> None:
        if _exact_name(name)[:1] == "_":
            raise AttributeError(f'attribute "{name}" is not allowed in Logic functions')
        setattr(write_guard(ob), name, value)

    def guarded_delattr(ob: Any, name: str) -> None:
        if _exact_name(name)[:1] == "_":
            raise AttributeError(f'attribute "{name}" is not allowed in Logic functions')
        delattr(write_guard(ob), name)

    return guarded_setattr, guarded_delattr


def class_factory(run_classes: set[type]) -> Callable[..., type]:
    """`__metaclass__` for one run: builds the class and remembers it as the run's own."""

    def make_class(name: str, bases: tuple, namespace: dict, **kwargs: Any) -> type:
        cls = type(name, bases, namespace, **kwargs)
        run_classes.add(cls)
        return cls

    return make_class


_INPLACE_OPS = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def guarded_inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE_OPS[op](target, value)


def guarded_apply(func: Callable, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


# Module-level guard globals, shared by every run (they hold no run state).
SHARED_GUARDS: dict[str, Any] = {
    "_getattr_": guarded_getattr,
    "_getitem_": operator.getitem,
    # Iteration is not filtered: no object reachable here hides items from the
    # author, so plain iter() is the guard (and sorted/zip/tuple may iterate in C).
    "_getiter_": iter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": guarded_inplacevar,
    "_apply_": guarded_apply,
}

# Builtins: RestrictedPython's safe/limited/utility sets as the base, minus
# what is risky here, plus ordinary pure helpers.
_REMOVED = frozenset(
    {
        "id",  # memory addresses help exploit interpreter bugs
        "setattr",
        "delattr",
        "_getattr_",  # replaced by the run's guarded versions
        "string",
        "math",
        "random",
        "whrandom",  # real modules: import the facades instead
        "same_type",
        "test",
        "reorder",
        "DateTime",  # Zope leftovers
        "range",
        "list",
        "tuple",  # limited_* versions refuse range(1001) and list("ab")
    }
)
_ADDED = (
    "range",
    "list",
    "tuple",
    "dict",
    "set",
    "frozenset",
    "bytes",
    "bytearray",
    "enumerate",
    "zip",
    "map",
    "filter",
    "sorted",
    "reversed",
    "iter",
    "next",
    "sum",
    "min",
    "max",
    "all",
    "any",
    "bin",
    "ascii",
    "format",
    "object",
    "super",
    "property",
    "staticmethod",
    "classmethod",
    "NotImplemented",
    "RecursionError",
    "TimeoutError",
    "ModuleNotFoundError",
    "StopAsyncIteration",
    "ConnectionError",
)
# Never present, whatever the bases above contain (belt and braces).
FORBIDDEN_BUILTINS = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "type",
        "vars",
        "globals",
        "locals",
        "breakpoint",
        "input",
        "help",
        "memoryview",
        "dir",
        "id",
        "exit",
        "quit",
        "copyright",
        "credits",
        "license",
        "aiter",
        "anext",
        "__loader__",
        "__spec__",
        "__debug__",
    }
)


def _build_builtins() -> dict[str, Any]:
    base: dict[str, Any] = {}
    for source in (safe_builtins, limited_builtins, utility_builtins):
        base.update(source)
    for name in _REMOVED:
        base.pop(name, None)
    for name in _ADDED:
        base[name] = getattr(builtins, name)
    base["getattr"] = guarded_getattr
    base["hasattr"] = guarded_hasattr
    for name in FORBIDDEN_BUILTINS:
        base.pop(name, None)
    return base


# Copied per run; the run adds __import__, setattr and delattr.
SHARED_BUILTINS: dict[str, Any] = _build_builtins()
