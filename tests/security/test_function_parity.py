"""Attacks on the Particle-parity surface of Logic functions (issue 12, item 6).

- `cbor.decode` (promises 3, 4, 7): input size and nesting are bounded, no CBOR
  tag builds an object outside the plain types (cbor2's datetime, Decimal,
  Fraction, regex, MIME, UUID, IP address, set, complex, shared-value and
  string-reference decoders are all neutralised), no cbor2 class reaches user
  code, and `cbor.encode` never calls a method of a user's object.
- `logic.get_context()` (promises 1, 2): the secrets in it are the accessor,
  never values; every read through it is checked against the manifest and
  audited, in a real worker too.
- `logic.data_url_encode` parameters cannot break out of the URL's MIME part.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import fractions
import ipaddress
import re
import subprocess
import sys
import time
import uuid
from email.mime.text import MIMEText
from pathlib import Path

import cbor2
import pytest

from runtime.manifest import files_from_json
from runtime.sandbox import cbor_module
from runtime.sandbox.cbor_module import CBOR2_OWN_TAGS, MAX_DEPTH, Tag, build_cbor_module
from runtime.sandbox.logic_module import data_url_decode, data_url_encode
from runtime.sandbox.testing import default_limits
from tests.support import runtime_service

LIMIT = 4096
cbor = build_cbor_module(LIMIT)
PLAIN = (str, bytes, int, float, bool, type(None))


def only_plain(value, depth=0):
    """Every object in `value` is a plain type, a list, a dict or a Tag (and it is a tree)."""
    assert depth <= MAX_DEPTH + 1, "deeper than the limit: a cycle?"
    kind = type(value)
    if kind in PLAIN:
        return True
    if kind is list:
        return all(only_plain(v, depth + 1) for v in value)
    if kind is dict:
        return all(type(k) in PLAIN and only_plain(v, depth + 1) for k, v in value.items())
    if kind is Tag:
        return type(value.tag) is int and only_plain(value.value, depth + 1)
    raise AssertionError(f"{kind!r} reached the function")


def tagged(number: int, payload: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(number, 0))[:-1] + payload


# --- CBOR: size -----------------------------------------------------------------------------


def test_cbor_input_is_bounded_by_the_event_data_limit():
    at_limit = cbor2.dumps(b"x" * (LIMIT - 3))
    assert len(at_limit) == LIMIT and cbor.decode(at_limit) == b"x" * (LIMIT - 3)
    over = cbor2.dumps(b"x" * (LIMIT - 2))
    for data in (over, base64.b64encode(over).decode()):
        with pytest.raises(ValueError, match=f"{LIMIT + 1} bytes of CBOR; the limit is {LIMIT} bytes"):
            cbor.decode(data)


def test_the_run_limit_reaches_user_code(sandbox_run):
    ran = sandbox_run(
        "import cbor\ndef main(event):\n    return cbor.decode(b'\\x5a' + b'\\x00\\x00\\x10\\x00' + b'x' * 4096)\n",
        limits=default_limits(event_data_max_bytes=4096),
    )
    assert (ran.error["type"], ran.error["message"]) == (
        "ValueError",
        "cbor.decode(): 4101 bytes of CBOR; the limit is 4096 bytes",
    )


@pytest.mark.parametrize(
    "header",
    ["9bffffffffffffffff", "bbffffffffffffffff", "5bffffffffffffffff", "7bffffffffffffffff", "9a7fffffff"],
)
def test_a_claimed_length_allocates_nothing(header):
    # An array, map, byte or text string claiming 2**64 - 1 items in a few bytes.
    started = time.monotonic()
    with pytest.raises(ValueError, match="invalid CBOR"):
        cbor.decode(bytes.fromhex(header))
    assert time.monotonic() - started < 1


# --- CBOR: nesting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opener",
    [b"\x81", b"\x9f", b"\xa1\x00", b"\xd8\x2a", b"\xc1"],
    ids=["array", "indefinite-array", "map", "unknown-tag", "epoch-tag"],
)
def test_nesting_is_bounded(opener):
    leaf = b"\x00"
    closer = b"\xff" if opener == b"\x9f" else b""
    ok = opener * MAX_DEPTH + leaf + closer * MAX_DEPTH
    assert only_plain(cbor.decode(ok))
    deep = opener * (MAX_DEPTH + 1) + leaf + closer * (MAX_DEPTH + 1)
    with pytest.raises(ValueError, match="nesting|depth"):
        cbor.decode(deep)


def test_a_million_levels_fail_fast_without_a_crash(sandbox_run):
    ran = sandbox_run(
        "import cbor\ndef main(event):\n    return cbor.decode(b'\\x81' * 1000000 + b'\\x00')\n",
        limits=default_limits(event_data_max_bytes=2_000_000),
    )
    assert ran.status == "error" and ran.error["type"] == "ValueError"
    assert "maximum container nesting depth" in ran.error["message"]


# --- CBOR: no tag builds an object ----------------------------------------------------------

SEMANTIC = [
    ("datetime", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), {}, 0),
    ("epoch", datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC), {"datetime_as_timestamp": True}, 1),
    ("date", datetime.date(2026, 1, 2), {}, 1004),
    ("decimal", decimal.Decimal("1.25"), {}, 4),
    ("fraction", fractions.Fraction(1, 3), {}, 30),
    ("regex", re.compile("(a+)+$"), {}, 35),
    ("mime", MIMEText("hello"), {}, 36),
    ("uuid", uuid.UUID(int=1), {}, 37),
    ("ipv4", ipaddress.IPv4Address("10.0.0.1"), {}, 52),
    ("ipv6", ipaddress.IPv6Address("::1"), {}, 54),
    ("ipv4-network", ipaddress.IPv4Network("10.0.0.0/8"), {}, 52),
    ("ipv6-interface", ipaddress.IPv6Interface("::1/64"), {}, 54),
    ("set", {1, 2}, {}, 258),
    ("frozenset", frozenset({"a"}), {}, 258),
    ("complex", 1 + 2j, {}, 43000),
]


@pytest.mark.parametrize("name,value,options,tag", SEMANTIC, ids=[s[0] for s in SEMANTIC])
def test_cbor2s_semantic_tags_come_back_as_plain_tags(name, value, options, tag):
    decoded = cbor.decode(cbor2.dumps(value, **options))
    assert type(decoded) is Tag and decoded.tag == tag
    assert only_plain(decoded)


@pytest.mark.parametrize(
    "hex_item,expected",
    [
        ("c5821bffffffffffffffff1bffffffffffffffff", Tag(5, [2**64 - 1, 2**64 - 1])),  # a huge bigfloat
        ("d8641a00004e20", Tag(100, 20000)),  # epoch date
        ("d901044401020304", Tag(260, b"\x01\x02\x03\x04")),  # network address (old)
        ("d90105821820440a000000", Tag(261, [32, b"\n\x00\x00\x00"])),  # network prefix (old)
        ("d9010083636162636461626364d81900", Tag(256, ["abc", "abcd", Tag(25, 0)])),  # string refs
    ],
)
def test_other_built_in_tags_are_plain_too(hex_item, expected):
    assert cbor.decode(bytes.fromhex(hex_item)) == expected


def test_shared_values_build_no_cycle():
    cyclic: list = []
    cyclic.append(cyclic)
    data = cbor2.dumps(cyclic, value_sharing=True)
    itself = cbor2.loads(data)
    assert itself[0] is itself  # what cbor2 itself would hand out
    decoded = cbor.decode(data)
    assert decoded == Tag(28, [Tag(29, 0)]) and only_plain(decoded)


def test_the_tags_cbor2_decodes_itself_are_exactly_the_neutralised_ones():
    """A cbor2 upgrade that decodes a new tag fails here: review it, then list it in
    CBOR2_OWN_TAGS (and until then its objects are refused by the copy, never handed out)."""
    unhooked = object()
    own = set()
    for number in [*range(70_000), 2**20, 2**31, 2**32 - 1, 2**63, 2**64 - 1]:
        for payload in (b"\x00", b"\x40", b"\x60", b"\x80", b"\xa0"):
            try:
                if cbor2.loads(tagged(number, payload), tag_hook=lambda tag, immutable: unhooked) is not unhooked:
                    own.add(number)
                    break
            except Exception:
                own.add(number)
                break
    assert own == CBOR2_OWN_TAGS | {2, 3, 55799}


def test_no_tag_number_hands_out_anything_but_plain_values():
    payloads = [b"\x00", b"\x40", b"\x60", b"\x80", b"\xa0", b"\x82\x01\x02", b"\xa1\x01\x02", b"\xf9\x3c\x00"]
    payloads += [b"\x44\x0a\x00\x00\x01", b"\x78\x1a2026-01-02T03:04:05+00:00", b"\x82\x18\x20\x44\x0a\x00\x00\x00"]
    for number in [*range(70_000), 2**32 - 1, 2**64 - 1]:
        for payload in payloads:
            try:
                value = cbor.decode(tagged(number, payload))
            except ValueError:
                continue
            assert only_plain(value), (number, payload)


def test_decoding_builds_no_host_object(tmp_path):
    """In a fresh interpreter: decoding a MIME tag imports none of the modules that parsing
    the message needs (cbor2 would import email's parser on first use)."""
    script = (
        "import sys, base64\n"
        "from runtime.sandbox.cbor_module import build_cbor_module\n"
        "watched = ('email.parser', 'email.message', 'email.mime.text')\n"
        "before = [m for m in watched if m in sys.modules]\n"
        "cbor = build_cbor_module(1 << 20)\n"
        f"for item in {[cbor2.dumps(v) for v in (MIMEText('x'), ipaddress.ip_address('::1'))]!r}:\n"
        "    cbor.decode(item)\n"
        "print(before, [m for m in watched if m in sys.modules])\n"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"


# --- CBOR: nothing of cbor2 reaches the function ----------------------------------------------


@pytest.mark.parametrize(
    "hex_item",
    ["", "1c", "9f", "62c328", "f0", "ff", "a18201020b", "c2820102", "0000"],
)
def test_every_failure_is_a_plain_error(hex_item):
    with pytest.raises((ValueError, TypeError)) as info:
        cbor.decode(bytes.fromhex(hex_item))
    assert type(info.value) in (ValueError, TypeError)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


@pytest.mark.parametrize(
    "body",
    [
        "return cbor.loads",
        "return cbor.CBORDecoder",
        "return cbor.decode.__globals__",
        "return getattr(cbor.decode, '__closure__')",
        "return getattr(cbor.Tag, '_make')",
        "cbor.decode = None",
        "cbor.Tag.tag = 5",
        "setattr(cbor.Tag, 'count', None)",
        "t = cbor.decode(b'\\xd8\\x2a\\x01')\nt.tag = 1",
        "return type(cbor.decode(b'\\xd8\\x2a\\x01')).__module__",
    ],
)
def test_the_facade_leads_nowhere(sandbox_run, body):
    from store.errors import DeployError

    source = "import cbor\ndef main(event):\n    " + body.replace("\n", "\n    ") + "\n"
    try:
        ran = sandbox_run(source)
    except DeployError:
        return
    assert ran.status == "error", ran.result


def test_encode_never_calls_a_users_method(sandbox_run):
    ran = sandbox_run("""
        import cbor
        import logic
        class Sneaky(dict):
            def items(self):
                logic.log.info("items called")
                return [("a", 1)]
            def keys(self):
                logic.log.info("keys called")
                return ["a"]
        class Text(str):
            def encode(self, *args):
                logic.log.info("encode called")
                return b""
        def main(event):
            out = []
            for value in (Sneaky(a=1), Text("x"), [Text("x")], {"k": Sneaky()}):
                try:
                    cbor.encode(value)
                    out.append("encoded")
                except TypeError as exc:
                    out.append(str(exc))
            cyclic = []
            cyclic.append(cyclic)
            try:
                cbor.encode(cyclic)
            except ValueError as exc:
                out.append(str(exc))
            return out
        """)
    assert ran.status == "success", ran.error
    assert ran.result == [
        "cbor.encode(): cannot encode Sneaky",
        "cbor.encode(): cannot encode Text",
        "cbor.encode(): cannot encode Text",
        "cbor.encode(): cannot encode Sneaky",
        f"cbor.encode(): nesting deeper than {MAX_DEPTH} levels (or a value that contains itself)",
    ]
    assert ran.host.logs == []


def test_the_module_is_imported_before_the_fork():
    # An isolated worker may not be able to read site-packages: cbor2 must come with the zygote.
    assert cbor_module.cbor2 is cbor2
    from runtime.sandbox import executor

    assert executor.build_cbor_module is build_cbor_module


# --- logic.get_context() ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "return logic.get_context()._asdict()",
        "return dict(logic.get_context().secrets)",
        "return logic.get_context().secrets._read('API_KEY')",
        "return getattr(logic.get_context().secrets, '_names')",
        "import json\nreturn json.dumps(logic.get_context())",
        "return logic.get_context()",
        "return vars(logic.get_context().secrets)",
    ],
)
def test_the_context_never_holds_secret_values(sandbox_run, body):
    from store.errors import DeployError

    source = "import logic\ndef main():\n    " + body.replace("\n", "\n    ") + "\n"
    try:
        ran = sandbox_run(source, secrets={"API_KEY": "the-value"}, declared=("API_KEY",))
    except DeployError:
        return
    assert ran.status == "error", ran.result
    assert ran.host.reads == []  # nothing was read by listing, copying or serialising it
    assert "the-value" not in repr(ran.outcome)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the late read's refusal
def test_a_context_kept_past_its_run_reads_nothing(sandbox_run):
    # Threat: the accessor reached through the context, read by code that runs after the
    # run has ended (a generator's `finally`, finalised when the run's globals are cleared).
    ran = sandbox_run(
        """
        import logic
        KEEP = []
        def main():
            ctx = logic.get_context()
            def reader():
                try:
                    yield "started"
                finally:
                    logic.log.info("late", ctx.secrets.API_KEY)
            gen = reader()
            next(gen)
            KEEP.append(gen)
            return "kept"
        """,
        secrets={"API_KEY": "the-value"},
        declared=("API_KEY",),
    )
    assert ran.result == "kept"
    assert ran.host.reads == [] and ran.host.logs == []


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = runtime_service(tmp_path_factory, "parity", workers=2)
    yield service
    service.close()


def test_reads_through_the_context_are_checked_and_audited_in_a_real_worker(service):
    actor = service.actor()
    service.create_secret(actor, "API_KEY", "ctx-secret-value-31f9")
    service.create_secret(actor, "OTHER", "never-read-value-77aa")
    source = (
        "import logic\nimport cbor\n"
        "def main():\n"
        "    store = logic.get_context().secrets\n"
        "    value = store.API_KEY\n"
        "    try:\n"
        "        store.OTHER\n"
        "    except KeyError as exc:\n"
        "        refused = str(exc)\n"
        "    logic.log.info('read', value)\n"
        "    return [len(value), refused, cbor.decode(cbor.encode({'n': [1, 2]}))]\n"
    )
    fn = service.deploy_function(
        actor, files_from_json({"name": "ctx-reader", "source": source, "secrets": ["API_KEY"]})
    )
    record = service.execute_function(actor, fn.name)
    assert record["status"] == "success", record["error"]
    assert record["result"] == [
        len("ctx-secret-value-31f9"),
        "secret 'OTHER' is not declared in this function's manifest; declared: API_KEY",
        {"n": [1, 2]},
    ]
    assert record["secrets_accessed"] == ["API_KEY"]
    assert "ctx-secret-value-31f9" not in str(record) and "[[SENSITIVE]]" in record["logs"][0]["message"]
    audit = service.audit(actor, "API_KEY")
    assert [a.run_id for a in audit] == [record["id"]]
    assert service.audit(actor, "OTHER") == []


# --- data URL parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        {"name": "x,data:text/html,<script>"},  # a ',' would end the MIME part: the rest becomes the data
        {"name": "a\r\nSet-Cookie: x=1"},
        {"name": "\x00"},
        {"na;me": "v"},
        {"na=me": "v"},
        {"name\n": "v"},
    ],
)
def test_data_url_parameters_cannot_break_out(parameters):
    with pytest.raises(ValueError, match="data_url_encode"):
        data_url_encode(b"x", "text/plain", parameters)


def test_quoted_parameters_cannot_inject_more_parameters():
    url = data_url_encode(b"x", "text/plain", {"a": 'v";charset=evil;b="'})
    assert data_url_decode(url).parameters == {"a": 'v";charset=evil;b="'}


def test_data_url_encode_reads_the_dict_not_the_users_methods(sandbox_run):
    ran = sandbox_run("""
        import logic
        class Params(dict):
            def items(self):
                return [("injected", "1")]
        def main(event):
            return logic.data_url_encode(b"x", "text/plain", Params(real="2"))
        """)
    assert ran.result == "data:text/plain;real=2;base64,eA=="


def test_a_long_mime_part_decodes_in_linear_time():
    url = "data:text/plain" + ";a=b" * 25_000 + ',"' * 10_000 + ",x"
    started = time.monotonic()
    assert data_url_decode(url).mime_type == "text/plain"
    assert time.monotonic() - started < 1
