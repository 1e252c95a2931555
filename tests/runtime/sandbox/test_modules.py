"""Import facades: exact allowlist, read-only, no route to a real module."""

from __future__ import annotations

import types

import pytest

from runtime.sandbox.modules import ALLOWED_MODULES, LOGIC_EXPORTS, SHARED_FACADES, make_importer, module_exports

EXPECTED = {
    "json",
    "math",
    "re",
    "datetime",
    "base64",
    "binascii",
    "hashlib",
    "hmac",
    "struct",
    "zlib",
    "random",
    "statistics",
    "string",
    "itertools",
    "functools",
    "collections",
    "decimal",
    "fractions",
    "uuid",
    "time",
    "logic",
    "cbor",
}


def test_allowlist_is_exact():
    assert set(ALLOWED_MODULES) == EXPECTED


@pytest.mark.parametrize("name", sorted(SHARED_FACADES))
def test_facades_expose_no_module_and_no_mutable_container(name):
    for attr, value in vars(SHARED_FACADES[name]).items():
        assert not isinstance(value, types.ModuleType), (name, attr)
        assert type(value) not in (list, dict, set, bytearray), (name, attr)
        assert not attr.startswith("_")


@pytest.mark.parametrize(
    "name,absent",
    [
        ("json", "decoder"),
        ("json", "scanner"),
        ("re", "sre_compile"),
        ("re", "Scanner"),
        ("string", "Formatter"),
        ("functools", "wraps"),
        ("functools", "update_wrapper"),
        ("decimal", "getcontext"),
        ("decimal", "DefaultContext"),
        ("uuid", "uuid1"),
        ("uuid", "getnode"),
        ("base64", "binascii"),
        ("statistics", "sys"),
        ("collections", "abc"),
        ("time", "localtime"),
        ("hashlib", "file_digest"),
    ],
)
def test_risky_names_are_not_exported(name, absent):
    assert absent not in vars(SHARED_FACADES[name])


def test_facade_is_read_only():
    json = SHARED_FACADES["json"]
    with pytest.raises(AttributeError, match="read-only"):
        json.dumps = None
    with pytest.raises(AttributeError, match="read-only"):
        del json.dumps
    assert repr(json) == "<module 'json'>"
    assert not hasattr(json, "__name__")  # `from json import x` must not fall back to sys.modules


def test_importer_errors_name_the_allowed_modules():
    importer = make_importer({})
    with pytest.raises(ImportError, match="module 'os' is not available in Logic functions; allowed modules: base64"):
        importer("os")
    with pytest.raises(ImportError, match="relative imports"):
        importer("json", None, None, (), 1)
    with pytest.raises(ImportError, match="cannot import name 'decoder' from 'json'"):
        importer("json", None, None, ("decoder",), 0)


def test_logic_exports_are_pinned(sandbox_run):
    names = sorted(LOGIC_EXPORTS | {"ledger", "mask", "REPLACE"})  # and a few that are not (yet) there
    ran = sandbox_run(f"import logic\ndef main(event):\n    return sorted(n for n in {names!r} if hasattr(logic, n))\n")
    assert set(ran.result) == LOGIC_EXPORTS
    assert module_exports("logic") == LOGIC_EXPORTS


def test_every_allowed_module_imports_and_works(sandbox_run):
    ran = sandbox_run("""
        import json, math, re, datetime, base64, binascii, hashlib, hmac, struct, zlib, random
        import statistics, string, itertools, functools, collections, decimal, fractions, uuid, time, logic
        import json as j
        from math import sqrt as root
        def main(event):
            return [
                j.loads(json.dumps({"a": 1})), math.floor(2.5), root(9), re.sub(r"\\d", "#", "a1"),
                datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc).isoformat(),
                base64.b64encode(b"hi").decode(), binascii.hexlify(b"\\x01").decode(),
                hashlib.sha256(b"x").hexdigest()[:8], hmac.new(b"k", b"m", "sha256").hexdigest()[:8],
                struct.unpack(">H", struct.pack(">H", 258))[0], len(zlib.compress(b"a" * 100)) < 100,
                0 <= random.random() < 1, statistics.mean([1, 2, 3]), string.ascii_lowercase[:3],
                list(itertools.islice(itertools.count(), 3)), functools.reduce(lambda a, b: a + b, [1, 2, 3]),
                collections.Counter("aab").most_common(1)[0][0], str(decimal.Decimal("1.10") + 1),
                str(fractions.Fraction(1, 3) * 3), len(str(uuid.uuid4())), time.time() > 0,
                string.Template("$x!").substitute(x="hi"),
            ]
        """)
    assert ran.status == "success", ran.error
    assert ran.result == [
        {"a": 1},
        2,
        3.0,
        "a#",
        "2024-01-02T00:00:00+00:00",
        "aGk=",
        "01",
        "2d711642",
        ran.result[8],
        258,
        True,
        True,
        2,
        "abc",
        [0, 1, 2],
        6,
        "a",
        "2.10",
        "1",
        36,
        True,
        "hi!",
    ]


def test_random_is_per_run(sandbox_run):
    source = "import random\ndef main(event):\n    random.seed(42)\n    return random.randint(0, 10**9)\n"
    assert sandbox_run(source).result == sandbox_run(source).result  # seeded: same
    unseeded = "import random\ndef main(event):\n    return random.getrandbits(64)\n"
    assert sandbox_run(unseeded).result != sandbox_run(unseeded).result


def test_decimal_context_starts_fresh_each_run(sandbox_run):
    leak = """
        import decimal
        def main(event):
            with decimal.localcontext() as ctx:
                ctx.prec = 3
                return str(decimal.Decimal(1) / 7)
        """
    assert sandbox_run(leak).result == "0.143"
    assert (
        sandbox_run("import decimal\ndef main(event):\n    return str(decimal.Decimal(1) / 7)\n").result
        == "0.1428571428571428571428571429"
    )


def test_import_inside_function_and_from_logic(sandbox_run):
    ran = sandbox_run("""
        def main(event):
            from logic import encoding
            import math
            return [encoding.hex_encode("a"), math.pi > 3]
        """)
    assert ran.result == ["61", True]


def test_host_internal_modules_are_not_importable_by_name(sandbox_run):
    # The importer hands _strptime to datetime's C code only; user code cannot name it.
    from store.errors import DeployError

    for source in (
        "import _strptime\ndef main(event):\n    return 1\n",
        "from datetime import _strptime\ndef main(event):\n    return 1\n",
    ):
        with pytest.raises(DeployError):
            sandbox_run(source)
