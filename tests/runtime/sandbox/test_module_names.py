"""Facade names are policy: each facade's exports are pinned here, name by name.

A change to any facade (a name added by hand, or a facade built from `dir()` again,
which would let a newer Python's additions through unreviewed) fails the pin test.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from runtime.sandbox import modules
from runtime.sandbox.cbor_module import build_cbor_module
from runtime.sandbox.modules import (
    ITERTOOLS_NAMES,
    MATH_NAMES,
    SHARED_FACADES,
    ZLIB_NAMES,
    make_importer,
    module_exports,
    random_facade,
)
from store.errors import DeployError

PINNED = {
    "base64": "a85decode a85encode b16decode b16encode b32decode b32encode b32hexdecode b32hexencode b64decode "
    "b64encode b85decode b85encode decodebytes encodebytes standard_b64decode standard_b64encode "
    "urlsafe_b64decode urlsafe_b64encode",
    "binascii": "Error Incomplete a2b_base64 a2b_hex b2a_base64 b2a_hex crc32 crc_hqx hexlify unhexlify",
    "collections": "ChainMap Counter OrderedDict defaultdict deque namedtuple",
    "datetime": "MAXYEAR MINYEAR UTC date datetime time timedelta timezone tzinfo",
    "decimal": "Clamped Context Decimal DecimalException DivisionByZero FloatOperation Inexact InvalidOperation "
    "MAX_EMAX MAX_PREC MIN_EMIN MIN_ETINY Overflow ROUND_05UP ROUND_CEILING ROUND_DOWN ROUND_FLOOR "
    "ROUND_HALF_DOWN ROUND_HALF_EVEN ROUND_HALF_UP ROUND_UP Rounded Subnormal Underflow localcontext",
    "fractions": "Fraction",
    "functools": "cache cmp_to_key lru_cache partial reduce",
    "hashlib": "algorithms_available algorithms_guaranteed blake2b blake2s md5 new pbkdf2_hmac sha1 sha224 sha256 "
    "sha384 sha3_224 sha3_256 sha3_384 sha3_512 sha512 shake_128 shake_256",
    "hmac": "HMAC compare_digest digest new",
    "itertools": "accumulate chain combinations combinations_with_replacement compress count cycle dropwhile "
    "filterfalse groupby islice pairwise permutations product repeat starmap takewhile tee zip_longest",
    "json": "JSONDecodeError JSONEncoder dumps loads",
    "math": "acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e erf erfc exp "
    "exp2 expm1 fabs factorial floor fmod frexp fsum gamma gcd hypot inf isclose isfinite isinf isnan "
    "isqrt lcm ldexp lgamma log log10 log1p log2 modf nan nextafter perm pi pow prod radians remainder "
    "sin sinh sqrt tan tanh tau trunc ulp",
    "re": "A ASCII DOTALL I IGNORECASE M MULTILINE Match NOFLAG Pattern S U UNICODE VERBOSE X compile error "
    "escape findall finditer fullmatch match search split sub subn",
    "statistics": "NormalDist StatisticsError correlation covariance fmean geometric_mean harmonic_mean "
    "linear_regression mean median median_grouped median_high median_low mode multimode pstdev "
    "pvariance quantiles stdev variance",
    "string": "Template ascii_letters ascii_lowercase ascii_uppercase capwords digits hexdigits octdigits printable "
    "punctuation whitespace",
    "struct": "Struct calcsize error iter_unpack pack pack_into unpack unpack_from",
    "time": "gmtime monotonic monotonic_ns perf_counter perf_counter_ns process_time sleep strftime strptime "
    "struct_time time time_ns",
    "uuid": "NAMESPACE_DNS NAMESPACE_OID NAMESPACE_URL NAMESPACE_X500 UUID uuid3 uuid4 uuid5",
    "zlib": "DEFLATED DEF_BUF_SIZE DEF_MEM_LEVEL MAX_WBITS ZLIB_RUNTIME_VERSION ZLIB_VERSION Z_BEST_COMPRESSION "
    "Z_BEST_SPEED Z_BLOCK Z_DEFAULT_COMPRESSION Z_DEFAULT_STRATEGY Z_FILTERED Z_FINISH Z_FIXED "
    "Z_FULL_FLUSH Z_HUFFMAN_ONLY Z_NO_COMPRESSION Z_NO_FLUSH Z_PARTIAL_FLUSH Z_RLE Z_SYNC_FLUSH Z_TREES "
    "adler32 compress compressobj crc32 decompress decompressobj error",
    "random": "Random betavariate choice choices expovariate gammavariate gauss getrandbits lognormvariate "
    "normalvariate paretovariate randbytes randint random randrange sample seed shuffle triangular "
    "uniform vonmisesvariate weibullvariate",
    "logic": "LedgerError MERGE MaskError PublishLimitError REPLACE data_url_decode data_url_encode encoding "
    "get_context ledger log mask publish",
    "cbor": "Tag decode encode",
}
LISTED = {"math": (math, MATH_NAMES), "zlib": (zlib, ZLIB_NAMES), "itertools": (itertools, ITERTOOLS_NAMES)}


def test_every_allowed_module_has_a_pin():
    assert set(PINNED) == set(modules.ALLOWED_MODULES)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_facade_exports_exactly_its_pinned_names(name):
    assert module_exports(name) == frozenset(PINNED[name].split())
    if name in SHARED_FACADES:
        assert set(vars(SHARED_FACADES[name])) == set(PINNED[name].split())


def test_per_run_facades_match_their_pins():
    assert set(vars(random_facade())) == set(PINNED["random"].split())
    decimal = make_importer({})("decimal")
    assert set(vars(decimal)) == set(PINNED["decimal"].split())
    assert set(vars(build_cbor_module(100))) == set(PINNED["cbor"].split())


@pytest.mark.parametrize("name", sorted(LISTED))
def test_listed_facades_are_module_level_frozensets_of_real_names(name):
    real, names = LISTED[name]
    assert type(names) is frozenset
    assert names == frozenset(PINNED[name].split())
    # Same objects as the real module: the facade hides names, it does not wrap them.
    for attr in names:
        assert getattr(SHARED_FACADES[name], attr) is getattr(real, attr)


def test_names_a_newer_python_adds_stay_refused():
    """Plant new public names in the real modules before the facades are built (a fresh
    interpreter): none of them may reach the facades."""
    script = (
        "import itertools, math, zlib\n"
        "math.planted_fn = math.sqrt; zlib.planted_fn = zlib.crc32; itertools.planted_fn = itertools.chain\n"
        "from runtime.sandbox.modules import module_exports\n"
        "print(sorted(n for m in ('math', 'zlib', 'itertools') for n in module_exports(m) if 'planted' in n))\n"
    )
    root = Path(__file__).parents[3]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# A name of a newer Python (3.12+), and whatever this Python has that the lists leave out.
UNLISTED = [("math", "sumprod"), ("math", "fma"), ("itertools", "batched"), ("zlib", "planted_fn")] + [
    (name, attr)
    for name, (real, names) in LISTED.items()
    for attr in sorted(set(dir(real)) - names)
    if not attr.startswith("_")
]


@pytest.mark.parametrize("name,attr", UNLISTED)
def test_unlisted_names_are_refused_at_deploy_with_a_clear_error(sandbox_run, name, attr):
    with pytest.raises(DeployError) as info:
        sandbox_run(f"from {name} import {attr}\ndef main(event):\n    return 1\n")
    assert info.value.message == (
        f"function.py:1: cannot import {attr!r} from {name!r}: not available in Logic functions"
    )


@pytest.mark.parametrize("name,attr", UNLISTED)
def test_unlisted_names_are_refused_at_run_time_with_a_clear_error(sandbox_run, name, attr):
    ran = sandbox_run(f"import {name}\ndef main(event):\n    return {name}.{attr}\n")
    assert ran.status == "error"
    assert (ran.error["type"], ran.error["message"]) == (
        "AttributeError",
        f"module {name!r} has no attribute {attr!r} in Logic functions",
    )
    importer = make_importer({})
    with pytest.raises(ImportError) as info:
        importer(name, None, None, (attr,), 0)
    assert str(info.value).startswith(
        f"cannot import name {attr!r} from {name!r}: not available in Logic functions; available: "
    )
