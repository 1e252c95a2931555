"""Importable modules: read-only facades over an exact allowlist.

`import json` gives user code a `ModuleFacade`, never the real module: an
immutable object holding only the functions, constants and classes listed in
`_EXPORTS` (threat: a real module leads to `sys`, `os` and `builtins` through
its globals, submodules such as `json.decoder`, or helpers such as
`string.Formatter`). Never exposed: operator, sys, codecs, inspect, types,
string.Formatter, functools.wraps/update_wrapper (they write attributes onto
any object), decimal.getcontext/setcontext and the shared contexts
(process-wide state), uuid.uuid1/getnode (host MAC address), and any mutable
module-level container (hashlib's algorithm sets become frozensets).
Every facade names its exports (MATH_NAMES, ZLIB_NAMES, ITERTOOLS_NAMES, the
`_pick` lists); none copies `dir()` of the real module, so a name a newer
Python adds is refused until someone reviews it and lists it.

`random` is bound per run: each run that imports it gets its own
`random.Random` seeded from the OS. `decimal` too: its import resets the
thread's context, and its `localcontext` goes inert once the run has ended.
`time.sleep` is allowed: the worker's wall clock limit ends a run that sleeps
too long. `logic` (logic_module) and `cbor` (cbor_module, bounded by the run's
limits) are built per run by the executor and handed to `make_importer`.

Only whole allowlisted names import; relative imports, `import json.decoder`
and `from json import <name not listed>` fail with an ImportError naming what
is allowed.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import decimal
import fractions
import functools
import hashlib
import hmac
import itertools
import json
import math
import os
import random
import re
import statistics
import string
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any


class ModuleFacade:
    """An immutable stand-in for a module; its attributes are exactly its exports.

    No `__name__`: `from m import x` falls back to `sys.modules["<__name__>.x"]`
    when `x` is missing, which would hand out a real submodule.
    """

    __slots__ = ("__dict__", "_facade_name")

    def __init__(self, name: str, exports: dict[str, Any]):
        object.__setattr__(self, "_facade_name", name)
        self.__dict__.update(exports)

    def __getattr__(self, name: str) -> Any:  # only reached for names that are not exported
        raise AttributeError(f"module {self._facade_name!r} has no attribute {name!r} in Logic functions")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"module {self._facade_name!r} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"module {self._facade_name!r} is read-only")

    def __repr__(self) -> str:
        return f"<module {self._facade_name!r}>"


def facade_exports(facade: ModuleFacade) -> frozenset[str]:
    return frozenset(facade.__dict__)


def _pick(module: Any, names: str | frozenset[str]) -> dict[str, Any]:
    """The listed names only; a listed name the running Python lacks is an error at import."""
    return {name: getattr(module, name) for name in (names.split() if isinstance(names, str) else sorted(names))}


# Listed by name, never `dir(module)`: a name a future Python adds stays refused until reviewed.
MATH_NAMES = frozenset(
    [
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atan2",
        "atanh",
        "cbrt",
        "ceil",
        "comb",
        "copysign",
        "cos",
        "cosh",
        "degrees",
        "dist",
        "e",
        "erf",
        "erfc",
        "exp",
        "exp2",
        "expm1",
        "fabs",
        "factorial",
        "floor",
        "fmod",
        "frexp",
        "fsum",
        "gamma",
        "gcd",
        "hypot",
        "inf",
        "isclose",
        "isfinite",
        "isinf",
        "isnan",
        "isqrt",
        "lcm",
        "ldexp",
        "lgamma",
        "log",
        "log10",
        "log1p",
        "log2",
        "modf",
        "nan",
        "nextafter",
        "perm",
        "pi",
        "pow",
        "prod",
        "radians",
        "remainder",
        "sin",
        "sinh",
        "sqrt",
        "tan",
        "tanh",
        "tau",
        "trunc",
        "ulp",
    ]
)
ZLIB_NAMES = frozenset(
    [
        "adler32",
        "compress",
        "compressobj",
        "crc32",
        "decompress",
        "decompressobj",
        "error",
        "DEFLATED",
        "DEF_BUF_SIZE",
        "DEF_MEM_LEVEL",
        "MAX_WBITS",
        "ZLIB_RUNTIME_VERSION",
        "ZLIB_VERSION",
        "Z_BEST_COMPRESSION",
        "Z_BEST_SPEED",
        "Z_BLOCK",
        "Z_DEFAULT_COMPRESSION",
        "Z_DEFAULT_STRATEGY",
        "Z_FILTERED",
        "Z_FINISH",
        "Z_FIXED",
        "Z_FULL_FLUSH",
        "Z_HUFFMAN_ONLY",
        "Z_NO_COMPRESSION",
        "Z_NO_FLUSH",
        "Z_PARTIAL_FLUSH",
        "Z_RLE",
        "Z_SYNC_FLUSH",
        "Z_TREES",
    ]
)
ITERTOOLS_NAMES = frozenset(
    [
        "accumulate",
        "chain",
        "combinations",
        "combinations_with_replacement",
        "compress",
        "count",
        "cycle",
        "dropwhile",
        "filterfalse",
        "groupby",
        "islice",
        "pairwise",
        "permutations",
        "product",
        "repeat",
        "starmap",
        "takewhile",
        "tee",
        "zip_longest",
    ]
)


_EXPORTS: dict[str, dict[str, Any]] = {
    "json": _pick(json, "dumps loads JSONDecodeError JSONEncoder"),
    "math": _pick(math, MATH_NAMES),
    "re": _pick(
        re,
        "compile search match fullmatch split findall finditer sub subn escape error "
        "Pattern Match A ASCII DOTALL I IGNORECASE M MULTILINE NOFLAG S U UNICODE VERBOSE X",
    ),
    "datetime": _pick(datetime, "date datetime time timedelta timezone tzinfo MINYEAR MAXYEAR UTC"),
    "base64": _pick(
        base64,
        "b64encode b64decode standard_b64encode standard_b64decode urlsafe_b64encode "
        "urlsafe_b64decode b32encode b32decode b32hexencode b32hexdecode b16encode "
        "b16decode b85encode b85decode a85encode a85decode encodebytes decodebytes",
    ),
    "binascii": _pick(
        binascii, "hexlify unhexlify b2a_hex a2b_hex b2a_base64 a2b_base64 crc32 crc_hqx Error Incomplete"
    ),
    "hashlib": {
        **_pick(
            hashlib,
            "md5 sha1 sha224 sha256 sha384 sha512 sha3_224 sha3_256 sha3_384 sha3_512 "
            "shake_128 shake_256 blake2b blake2s new pbkdf2_hmac",
        ),
        # Both are plain (mutable, module-wide) sets in the real module.
        "algorithms_available": frozenset(hashlib.algorithms_available),
        "algorithms_guaranteed": frozenset(hashlib.algorithms_guaranteed),
    },
    "hmac": _pick(hmac, "new digest compare_digest HMAC"),
    "struct": _pick(struct, "pack unpack calcsize iter_unpack pack_into unpack_from Struct error"),
    "zlib": _pick(zlib, ZLIB_NAMES),
    "statistics": _pick(
        statistics,
        "mean fmean geometric_mean harmonic_mean median median_low median_high "
        "median_grouped mode multimode quantiles pstdev pvariance stdev variance "
        "covariance correlation linear_regression NormalDist StatisticsError",
    ),
    "string": _pick(
        string,
        "ascii_letters ascii_lowercase ascii_uppercase digits hexdigits octdigits "
        "punctuation printable whitespace capwords Template",
    ),
    "itertools": _pick(itertools, ITERTOOLS_NAMES),
    "functools": _pick(functools, "reduce partial lru_cache cache cmp_to_key"),
    "collections": _pick(collections, "deque defaultdict OrderedDict Counter ChainMap namedtuple"),
    "decimal": _pick(
        decimal,
        "Decimal Context localcontext DecimalException InvalidOperation DivisionByZero "
        "Inexact Rounded Overflow Underflow Subnormal Clamped FloatOperation "
        "ROUND_05UP ROUND_CEILING ROUND_DOWN ROUND_FLOOR ROUND_HALF_DOWN "
        "ROUND_HALF_EVEN ROUND_HALF_UP ROUND_UP MAX_PREC MAX_EMAX MIN_EMIN MIN_ETINY",
    ),
    "fractions": _pick(fractions, "Fraction"),
    "uuid": _pick(uuid, "UUID uuid3 uuid4 uuid5 NAMESPACE_DNS NAMESPACE_URL NAMESPACE_OID NAMESPACE_X500"),
    "time": _pick(
        time,
        "time time_ns monotonic monotonic_ns perf_counter perf_counter_ns process_time "
        "gmtime strftime strptime sleep struct_time",
    ),
}

_RANDOM_METHODS = [
    "random",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "uniform",
    "triangular",
    "gauss",
    "normalvariate",
    "lognormvariate",
    "expovariate",
    "vonmisesvariate",
    "gammavariate",
    "betavariate",
    "paretovariate",
    "weibullvariate",
    "getrandbits",
    "randbytes",
    "seed",
]

# Shared by every run: immutable facades over immutable or host-owned values.
SHARED_FACADES: dict[str, ModuleFacade] = {name: ModuleFacade(name, exports) for name, exports in _EXPORTS.items()}

ALLOWED_MODULES: tuple[str, ...] = tuple(sorted([*SHARED_FACADES, "random", "logic", "cbor"]))
_ALLOWED_TEXT = ", ".join(ALLOWED_MODULES)


def module_exports(name: str) -> frozenset[str] | None:
    """Names `from <name> import ...` may take, or None if the module is not allowed."""
    if name in SHARED_FACADES:
        return facade_exports(SHARED_FACADES[name])
    if name == "random":
        return frozenset([*_RANDOM_METHODS, "Random"])
    return _RUN_EXPORTS.get(name)


LOGIC_EXPORTS = frozenset(
    {
        "publish",
        "log",
        "encoding",
        "PublishLimitError",
        "get_context",
        "data_url_encode",
        "data_url_decode",
        "ledger",
        "LedgerError",
        "REPLACE",
        "MERGE",
        "mask",
        "MaskError",
    }
)
CBOR_EXPORTS = frozenset({"decode", "encode", "Tag"})
_RUN_EXPORTS = {"logic": LOGIC_EXPORTS, "cbor": CBOR_EXPORTS}  # modules the executor builds per run


def random_facade() -> ModuleFacade:
    """A `random` facade bound to a fresh generator (seeded from the OS, never shared with a fork sibling)."""
    rng = random.Random(os.urandom(32))
    exports = {name: getattr(rng, name) for name in _RANDOM_METHODS}
    exports["Random"] = random.Random
    return ModuleFacade("random", exports)


class _RunLocalContext:
    """`decimal.localcontext(...)` of one run: the real manager, inert once the run has ended.

    Threat: a generator paused inside `with decimal.localcontext(c):` and kept alive
    past its run (a reference cycle, or a host cache keyed by a run's str subclass)
    is finalised during a later run; the real manager's exit then makes `c` (the
    earlier run's prec/rounding/traps) the current context of that later run, and
    an entry at that time would copy the later run's context and flags. After its
    run, entering raises and exiting leaves the current context alone.
    """

    __slots__ = ("_manager", "_alive")

    def __init__(self, manager: Any, alive: Callable[[], bool]):
        self._manager = manager
        self._alive = alive

    def __enter__(self) -> decimal.Context:
        if not self._alive():
            raise RuntimeError("this run has ended; decimal contexts can no longer be changed")
        return self._manager.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._alive():
            self._manager.__exit__(*exc)


def _fresh_decimal(alive: Callable[[], bool]) -> ModuleFacade:
    # The thread's decimal context outlives a run; start each run from the defaults.
    decimal.setcontext(decimal.Context())

    def localcontext(ctx: decimal.Context | None = None, **kwargs: Any) -> _RunLocalContext:
        return _RunLocalContext(decimal.localcontext(ctx, **kwargs), alive)

    localcontext.__doc__ = decimal.localcontext.__doc__
    return ModuleFacade("decimal", {**_EXPORTS["decimal"], "localcontext": localcontext})


# Modules that C code of an allowed module imports at call time through the caller's
# `__import__` (datetime.strptime -> _strptime). User code cannot name them: the policy
# refuses underscore names, so only the host library reaches this path. Imported here,
# before the fork, because an isolated worker may not be able to read the stdlib.
import _strptime  # noqa: E402

_HOST_INTERNAL = {"_strptime": _strptime}


def make_importer(
    run_modules: dict[str, Callable[[], ModuleFacade]], alive: Callable[[], bool] = lambda: True
) -> Callable[..., ModuleFacade]:
    """`__import__` for one run: facades only; `random`, `decimal` and the run's own modules
    (`run_modules`: "logic", "cbor" -> builder) built on first import.

    `alive()` is true while the run is in progress (decimal.localcontext goes inert after).
    """
    per_run: dict[str, ModuleFacade] = {}
    builders: dict[str, Callable[[], ModuleFacade]] = {
        **{name: build for name, build in run_modules.items() if name in _RUN_EXPORTS},
        "random": random_facade,
        "decimal": lambda: _fresh_decimal(alive),
    }

    def logic_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0):
        if level:
            raise ImportError(f"relative imports are not allowed in Logic functions; allowed modules: {_ALLOWED_TEXT}")
        if type(name) is not str:
            raise ImportError("module name must be a str")
        if name in _HOST_INTERNAL and not fromlist:
            return _HOST_INTERNAL[name]
        facade = per_run.get(name)
        if facade is None:
            builder = builders.get(name)
            if builder is not None:
                facade = per_run[name] = builder()
            else:
                facade = SHARED_FACADES.get(name)
                if facade is None:
                    raise ImportError(
                        f"module {name!r} is not available in Logic functions; allowed modules: {_ALLOWED_TEXT}"
                    )
        if fromlist:
            exports = facade_exports(facade)
            for item in fromlist:
                if type(item) is not str or item not in exports:
                    raise ImportError(
                        f"cannot import name {item!r} from {name!r}: not available in Logic functions; "
                        f"available: {', '.join(sorted(exports))}"
                    )
        return facade

    return logic_import
