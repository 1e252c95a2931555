"""Red-team attacks on the sandbox, beyond test_security_escapes.py.

Each test is one attempted attack and asserts it is refused or contained.
Two classes of hole were found and closed:

- ABC poisoning: `ABCMeta.register` on an exported ABC (collections.ChainMap,
  fractions.Fraction) or a run's subclass of one changed `isinstance` for every
  later run in the worker (guards.guarded_getattr refuses it);
- late finalizers: a generator paused in `with decimal.localcontext(c):` and
  kept alive past its run (a reference cycle, or a host cache such as `re`'s
  keyed by a run's str subclass) set `c` as the current decimal context in the
  middle of a later run (modules._RunLocalContext, executor: gc + cleared
  builtins at the end of each run).

Residual (not in the sandbox): a log line or exception message cut at its
limit through an *encoded* secret (hex, base64, ...) leaves a prefix that the
engine's cut-tail masking does not recognise (xfail below).

The remaining tests are attacks that held; they pin the behaviour.
"""

from __future__ import annotations

import decimal
import textwrap

import pytest

from runtime.sandbox import run_function
from runtime.sandbox.testing import RecordingHost, compile_source, default_limits, run_source
from store.errors import DeployError

# The attacks' generators fail inside their finalizers on purpose (output closed, run ended).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SECRET = "tok_live_9f8e7d6c5b4a3210-redteam"

THIRD = "0.3333333333333333333333333333"

VICTIM_DECIMAL_AND_ABC = """
import collections, decimal, fractions, re
def main(event):
    before = str(decimal.Decimal(1) / decimal.Decimal(3))
    for i in range(700):           # evicts old entries of re's cache (and allocates: gc runs)
        re.compile('victim-%d' % i)
    junk = []
    for i in range(3000):
        x = [i]
        x.append(x)
    after = str(decimal.Decimal(1) / decimal.Decimal(3))
    counter = dict(collections.Counter('hello'))
    mixed = str(fractions.Fraction(1, 2) + 0.5)
    return [before, after, counter, mixed]
"""

VICTIM_EXPECTED = [THIRD, THIRD, {"h": 1, "e": 1, "l": 2, "o": 1}, "1.0"]


def attempt(source: str, **kwargs):
    """The Ran of `source`, or the DeployError's problems as a str."""
    try:
        return run_source(source, **kwargs)
    except DeployError as exc:
        return "\n".join(exc.problems)


def refused(ran, pattern: str) -> bool:
    if isinstance(ran, str):
        return pattern in ran
    return ran.status == "error" and pattern in f"{ran.error['type']}: {ran.error['message']}"


def assert_victim_unharmed():
    ran = run_source(VICTIM_DECIMAL_AND_ABC)
    assert ran.status == "success", ran.error
    assert ran.result == VICTIM_EXPECTED


# --- ABC registry poisoning (hole, closed) ------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "collections.ChainMap.register(str)",
        "fractions.Fraction.register(float)",
        "getattr(collections.ChainMap, 'register')(str)",
        "M.register(str)",  # a run's own subclass: still poisons MutableMapping
        "super(M, M).register(str)",
    ],
)
def test_abc_register_is_refused(target):
    ran = attempt(f"""
import collections, fractions
class M(collections.ChainMap):
    pass
def main(event):
    {target}
    return issubclass(str, M)
""")
    assert not isinstance(ran, str)
    assert ran.status == "error", ran.result
    assert ran.error["type"] == "AttributeError"
    assert_victim_unharmed()


def test_abc_subclass_still_works():
    ran = run_source("""
import collections
class M(collections.ChainMap):
    pass
def main(event):
    m = M({'a': 1}, {'b': 2})
    return [m['a'], m['b'], isinstance(m, collections.ChainMap)]
""")
    assert ran.result == [1, 2, True]


# --- late finalizers and the decimal context (hole, closed) ----------------------------------------

POISON_BY_CYCLE = """
import decimal
def g():
    with decimal.localcontext() as c:
        yield 1
def main(event):
    bad = decimal.Context(prec=2, rounding=decimal.ROUND_DOWN)
    with decimal.localcontext(bad):
        gen = g()
        next(gen)                      # saved context: `bad`
    loop = [gen]
    loop.append(loop)                  # freed only by the cycle collector, i.e. later
    return 1
"""

POISON_BY_RE_CACHE = """
import decimal, re
class S(str):
    pass
def g():
    with decimal.localcontext() as c:
        yield 1
def main(event):
    bad = decimal.Context(prec=2)
    with decimal.localcontext(bad):
        gen = g()
        next(gen)
    s = S('redteam-unique-pattern')
    s.keep = gen                       # re's module cache keeps `s` (its key) past the run
    re.compile(s)
    return 1
"""


@pytest.mark.parametrize("poison", [POISON_BY_CYCLE, POISON_BY_RE_CACHE], ids=["cycle", "re-cache"])
def test_late_decimal_context_restore_does_not_reach_the_next_run(poison):
    assert run_source(poison).status == "success"
    assert_victim_unharmed()
    assert_victim_unharmed()


def test_late_localcontext_entry_is_refused_and_cannot_copy_the_next_runs_context():
    # The finalizer tries, during a later run, to enter a fresh localcontext (which would
    # copy that run's current context and flags) and to log what it saw.
    attacker = """
import decimal, logic, re
class S(str):
    pass
def g(lc, log):
    try:
        yield 1
    finally:
        with lc() as seen:
            log('LATE ' + str(seen))
def main(event):
    gen = g(decimal.localcontext, logic.log.info)
    next(gen)
    s = S('redteam-late-entry')
    s.keep = gen
    re.compile(s)
    return 1
"""
    assert run_source(attacker).status == "success"
    victim = run_source(VICTIM_DECIMAL_AND_ABC)
    assert victim.result == VICTIM_EXPECTED
    assert not any("LATE" in m for m in victim.host.messages)


def test_decimal_localcontext_still_works_within_a_run():
    ran = run_source("""
import decimal
def g():
    with decimal.localcontext(prec=3) as c:
        yield str(decimal.Decimal(1) / 3)
        yield str(decimal.Decimal(1) / 3)
def main(event):
    out = list(g())
    with decimal.localcontext() as c:
        c.prec = 5
        out.append(str(decimal.Decimal(2) / 3))
    out.append(str(decimal.Decimal(1) / 3))
    return out
""")
    assert ran.result == ["0.333", "0.333", "0.66667", THIRD]


def test_decimal_context_is_fresh_after_a_run_that_left_one_current():
    run_source(POISON_BY_CYCLE)
    assert decimal.getcontext().prec == 28  # the host's own context after the run


def test_late_generator_cannot_log_publish_or_read_secrets_in_a_later_run():
    attacker = """
import logic, re
class S(str):
    pass
def g(log, publish, secrets):
    try:
        yield 1
    finally:
        log('LATE-LOG')
        publish('late-event', 'x')
        log('LATE ' + secrets.API_KEY)
def main(event, secrets):
    gen = g(logic.log.info, logic.publish, secrets)
    next(gen)
    loop = [gen]
    loop.append(loop)
    s = S('redteam-late-logger')
    s.keep = gen
    re.compile(s)
    return 1
"""
    first = run_source(attacker, secrets={"API_KEY": SECRET}, declared=("API_KEY",))
    assert first.status == "success"
    assert first.host.messages == [] and first.host.events == [] and first.host.reads == []
    victim = run_source(VICTIM_DECIMAL_AND_ABC, secrets={"API_KEY": SECRET})
    assert victim.host.messages == [] and victim.host.events == [] and victim.host.reads == []


def test_late_code_finds_no_builtins_or_guards():
    # A function kept alive past its run (in re's cache) and called by nobody: what matters
    # is that its globals and builtins are gone, so nothing in it can run usefully.
    host = RecordingHost()
    fn = compile_source(
        textwrap.dedent("""
        import re
        class S(str):
            pass
        def later():
            return len([1])
        def main(event):
            s = S('redteam-kept-function')
            s.keep = later
            re.compile(s)
            return 1
    """)
    )
    run_function(fn, {}, host, declared_secrets=(), limits=default_limits())
    import re

    kept = [key[1] for key in list(getattr(re, "_cache", {})) if getattr(key[1], "keep", None)]
    assert kept, "the attack did not keep its function (re's cache changed?)"
    with pytest.raises(NameError):
        kept[-1].keep()


# --- secrets cut at a limit (residual: engine side) ----------------------------------------------


@pytest.mark.parametrize("encode", ["hex", "base64", "base85"])
def test_encoded_secret_cut_at_the_log_cap_is_masked_by_the_engine(encode):
    from runtime.execution.engine import _mask_cut_tails
    from runtime.execution.redactor import Redactor

    cap = 200
    ran = run_source(
        f"""
import logic
def main(secrets):
    print('x' * 150)
    print('y' * 30 + logic.encoding.{encode}_encode(secrets.API_KEY))
    return 1
""",
        secrets={"API_KEY": SECRET},
        declared=("API_KEY",),
        limits=default_limits(log_max_bytes=cap),
    )
    redactor = Redactor.for_values([SECRET])
    record = {"logs": [{"message": redactor.redact(m)} for m in ran.host.messages], "error": None}
    _mask_cut_tails(record, redactor)  # what Engine.run does after redaction
    cut_line = record["logs"][1]["message"]
    assert cut_line.endswith("[[SENSITIVE]]")
    assert set(cut_line.removesuffix("[[SENSITIVE]]")) <= {"y"}, f"{encode} prefix left readable: {cut_line!r}"


def test_log_line_is_cut_at_the_cap():
    ran = run_source(
        "def main(event):\n    print('x' * 150)\n    print('y' * 100)\n", limits=default_limits(log_max_bytes=200)
    )
    # A line costs its bytes plus its newline: 151, then 48 + 1 of the next.
    assert ran.host.messages == ["x" * 150, "y" * 48, "[log truncated: limit of 200 bytes reached]"]


# --- attacks that held ------------------------------------------------------------------------------


def _main(body: str, prelude: str = "") -> str:
    return textwrap.dedent(prelude) + "def main(event, secrets):\n" + textwrap.indent(textwrap.dedent(body), "    ")


HELD = [
    # first-class print is a bound method of the run's collector: its self stays out of reach
    ("print-self", _main("p = print\nreturn getattr(p, '__self__')"), "not allowed"),
    ("print-func", _main("p = print\nreturn getattr(p, '__func__')"), "not allowed"),
    # generic aliases and annotations
    ("genericalias-origin", _main("return getattr(list[int], '__origin__')"), "not allowed"),
    ("annassign", _main("x: int = 1\nreturn x"), "AnnAssign statements are not allowed"),
    ("init-subclass", _main("return 1", "class A:\n    def __init_subclass__(cls):\n        pass\n"), "starts with"),
    ("class-getitem", _main("return 1", "class A:\n    def __class_getitem__(cls, i):\n        pass\n"), "starts with"),
    ("define-del", _main("return 1", "class A:\n    def __del__(self):\n        pass\n"), "starts with"),
    ("define-format", _main("return 1", "class A:\n    def __format__(self, s):\n        pass\n"), "starts with"),
    ("define-hash", _main("return 1", "class A:\n    def __hash__(self):\n        return 0\n"), "starts with"),
    ("reduce-ex", _main("return getattr(1, '__reduce_ex__')(2)"), "not allowed"),
    # namedtuple's exec: field names are checked identifiers, str() of subclasses is exact
    (
        "namedtuple-field-injection",
        _main("import collections\nreturn collections.namedtuple('P', ['a', 'b=__import__(\"os\")'])"),
        "must be valid identifiers",
    ),
    (
        "namedtuple-typename-injection",
        _main("import collections\nreturn collections.namedtuple('P(): pass\\nimport os #', 'a')"),
        "must be valid identifiers",
    ),
    (
        "namedtuple-private-make",
        _main("import collections\nP = collections.namedtuple('P', 'a')\nreturn getattr(P, '_make')"),
        "not allowed",
    ),
    # struct.Struct.format is a data attribute, but the name stays blocked
    ("struct-format", _main("import struct\nreturn getattr(struct.Struct('>I'), 'format')"), "not allowed"),
    # exceptions of host code: traceback and context stay out of reach
    (
        "exc-context",
        _main("try:\n    int('x')\nexcept ValueError as e:\n    return getattr(e, '__context__')"),
        "not allowed",
    ),
    (
        "exc-notes",
        _main("try:\n    int('x')\nexcept ValueError as e:\n    return getattr(e, '__notes__')"),
        "not allowed",
    ),
    (
        "stopiteration-frame",
        _main("g = (i for i in [])\ntry:\n    next(g)\nexcept StopIteration as e:\n    return getattr(g, 'gi_frame')"),
        "not allowed",
    ),
    # bound methods of facades' objects
    (
        "random-method-self",
        _main("import random\nr = random.Random(1)\nreturn getattr(r.random, '__self__')"),
        "not allowed",
    ),
    (
        "random-subclass-randbelow",
        _main("import random\nclass R(random.Random):\n    pass\nreturn getattr(R(1), '_randbelow')"),
        "not allowed",
    ),
    (
        "re-match-re-groupindex-write",
        _main("import re\nm = re.match('(?P<a>x)', 'x')\nm.re.groupindex['b'] = 1"),
        "cannot change",
    ),
    ("hash-object-state", _main("import hashlib\nh = hashlib.sha256()\nh.name = 'x'"), "cannot change"),
    ("uuid-int-write", _main("import uuid\nu = uuid.uuid4()\nu.int = 1"), "cannot change"),
    ("zlib-object-write", _main("import zlib\nc = zlib.compressobj()\nc.x = 1"), "cannot change"),
    ("template-pattern-write", _main("import string\nstring.Template.pattern = None"), "cannot change"),
    (
        "template-class-attr-via-setattr",
        _main("import string\nsetattr(string.Template, 'delimiter', '#')"),
        "cannot change",
    ),
    ("json-encoder-item-sep", _main("import json\nsetattr(json.JSONEncoder, 'item_separator', ';')"), "cannot change"),
    (
        "namedtuple-class-write",
        _main("import collections\nP = collections.namedtuple('P', 'a')\nP.x = 1"),
        "cannot change",
    ),
    ("context-record-write", _main("setattr(event, 'data', 'x')"), "cannot change"),
    ("datetime-tz-write", _main("import datetime\ndatetime.UTC.x = 1"), "cannot change"),
    ("property-fget-write", _main("p = property(len)\np.fget = print"), "cannot change"),
    ("decimal-max-prec-mutation", _main("import decimal\ndecimal.Decimal.x = 1"), "cannot change"),
    ("functools-partial-func", _main("import functools\np = functools.partial(len)\np.func = print"), "cannot change"),
    (
        "lru-cache-wrapped",
        _main("import functools\nf = functools.lru_cache(len)\nreturn getattr(f, '__wrapped__')"),
        "not allowed",
    ),
    # imports C code makes on the user's behalf stay host-only
    ("import-strptime-stmt", _main("import _strptime\nreturn 1"), "not available"),
    ("from-strptime", _main("from _strptime import _TimeRE_cache\nreturn 1"), "not available"),
    ("import-logic-submodule", _main("import logic.encoding\nreturn 1"), "not available"),
    ("from-decimal-setcontext", _main("from decimal import setcontext\nreturn 1"), "not available"),
    ("from-re-purge", _main("from re import purge\nreturn 1"), "not available"),
    ("from-string-formatter", _main("from string import Formatter\nreturn 1"), "not available"),
    ("star-import", _main("from json import *\nreturn 1"), '"*" imports are not allowed'),
    # secrets
    ("secrets-percent-undeclared", _main("return '%(OTHER)s' % secrets"), "SecretNotDeclared"),
    ("secrets-dict-undeclared", _main("return dict((k, secrets[k]) for k in ['OTHER'])"), "SecretNotDeclared"),
    ("secrets-get-undeclared", _main("return secrets.get('OTH' + 'ER', 'none')"), "SecretNotDeclared"),
    ("secrets-getattr-computed", _main("return getattr(secrets, 'OTH' + 'ER')"), "SecretNotDeclared"),
    ("secrets-names-slot", _main("return getattr(secrets, '_names')"), "not allowed"),
    ("secrets-super", _main("return getattr(super(type(secrets), secrets), 'x')"), "NameError"),
    ("secrets-reduce", _main("return getattr(secrets, '__reduce__')()"), "not allowed"),
    (
        "template-undeclared-attr-walk",
        _main(
            "import string\nclass T(string.Template):\n"
            "    braceidpattern = '[a-z_.]+'\n"
            "return T('${OTHER}').substitute(secrets)"
        ),
        "SecretNotDeclared",
    ),
    # results / events cannot carry host objects or run user code in the host
    ("return-print", _main("return print"), "ResultError"),
    (
        "return-counter-subclass",
        _main("return C(a=1)", "import collections\nclass C(collections.Counter):\n    pass\n"),
        "ResultError",
    ),
    (
        "publish-dict-subclass",
        _main("import logic\nlogic.publish('e', D(a=1))", "class D(dict):\n    pass\n"),
        "ResultError",
    ),
    (
        "publish-name-str-subclass-len",
        _main("import logic\nlogic.publish(S('x' * 100), None)", "class S(str):\n    pass\n"),
        "ValueError",
    ),
]


@pytest.mark.parametrize("source,pattern", [pytest.param(s, p, id=i) for i, s, p in HELD])
def test_attack_held(source, pattern):
    ran = attempt(source, secrets={"API_KEY": SECRET, "OTHER": "other-secret-value"}, declared=("API_KEY",))
    if not isinstance(ran, str):
        assert "other-secret-value" not in repr(ran.outcome) and "other-secret-value" not in repr(ran.host.logs)
        assert ran.host.reads in ([], ["API_KEY"])
    assert refused(ran, pattern), ran if isinstance(ran, str) else (ran.status, ran.error, ran.result)


def test_template_substitute_reads_only_declared_keys_without_attribute_walk():
    ran = run_source(
        """
import string
class T(string.Template):
    braceidpattern = '[A-Za-z_.]+'
def main(secrets):
    return T('${API_KEY.upper}').safe_substitute(secrets)
""",
        secrets={"API_KEY": SECRET},
        declared=("API_KEY",),
    )
    # a dotted name is one key lookup (not declared: left as is), never an attribute walk
    assert ran.status == "success" and ran.result == "${API_KEY.upper}"
    assert ran.host.reads == []


def test_format_builtin_and_nested_fstring_specs_do_not_walk_attributes():
    ran = run_source("""
import datetime
def main(event):
    spec = '{0.__class__}'
    d = datetime.date(2024, 1, 2)
    return [format(d, '%Y {x}'), f"{d!r:>{5}}", f"{'a'!r:{'>'}{8}}", format(1.5, '>8'), format(d, spec)]
""")
    assert ran.status == "success"
    assert ran.result == ["2024 {x}", "datetime.date(2024, 1, 2)", "     'a'", "     1.5", "{0.__class__}"]


def test_str_subclass_patterns_in_host_caches_do_not_leak_into_other_runs():
    run_source("""
import re, struct, time
class S(str):
    def __eq__(self, other):
        return True
def main(event):
    out = []
    for f in (lambda: re.compile(S('a')), lambda: struct.pack(S('>I'), 1), lambda: time.strptime('2024', S('%Y'))):
        try:
            out.append(str(f()))
        except TypeError as e:
            out.append(str(e))
    return out
""")
    victim = run_source("""
import re, struct, time
def main(event):
    p = re.compile('b')
    return [p.pattern == 'b', p.pattern, struct.pack('>I', 1).hex(), time.strptime('2024', '%Y')[0]]
""")
    assert victim.result == [True, "b", "00000001", 2024]


def test_re_cache_key_cannot_be_spoofed_with_an_int_subclass_flag():
    # flags of an int subclass with __eq__ would be a key equal to another run's; defining
    # __eq__ drops __hash__, so the lookup fails instead of matching.
    run_source("""
import re
class F(int):
    def __eq__(self, other):
        return True
def main(event):
    try:
        re.compile('spoof', F(2))
    except TypeError:
        return 'unhashable'
    return 'compiled'
""")
    victim = run_source("import re\ndef main(event):\n    return bool(re.match('spoof', 'SPOOF'))\n")
    assert victim.result is False


def test_late_generator_finally_runs_in_its_own_run_only():
    # No __del__ can be defined; the generator's `finally` is the finalizer. It runs at the
    # end of its own run (env cleared, cycles collected) and finds the output closed.
    host = RecordingHost()
    fn = compile_source(
        textwrap.dedent("""
        import logic
        def g(log):
            try:
                yield 1
            finally:
                log('finally ran')
        def main(event):
            gen = g(logic.log.info)
            next(gen)
            loop = [gen]
            loop.append(loop)
            return 1
    """)
    )
    outcome = run_function(fn, {}, host, declared_secrets=(), limits=default_limits())
    assert outcome.status == "success"
    assert host.logs == []
    other = RecordingHost()
    run_function(
        compile_source("def main(event):\n    return [[i] for i in range(5000)] and 1\n"),
        {},
        other,
        declared_secrets=(),
        limits=default_limits(),
    )
    assert other.logs == []


# --- through real workers -----------------------------------------------------------------------------


def test_poisoning_does_not_cross_runs_in_one_worker():
    from runtime.workers import Job, WorkerPool
    from store.settings import Settings

    def job(source: str, key: str) -> Job:
        context = {
            "event": {"id": "e", "name": "n", "data": "{}", "published_at": "2024-01-01T00:00:00Z", "source": "t"},
            "scheduled": None,
            "trigger": {"type": "event", "triggered_at": "2024-01-01T00:00:00Z", "event_id": "e"},
            "function_info": {"id": key, "name": key, "version": 1, "owner": "user:alice"},
        }
        return Job(
            owner="user:alice",
            version_key=f"{key}:1",
            source=source,
            filename="f.py",
            entry="main",
            declared_secrets=(),
            context=context,
            timeout_s=5.0,
            memory_mb=128,
            limits=default_limits(),
        )

    def no_secret(name: str) -> str:
        raise AssertionError(name)

    settings = Settings(workers=1, worker_memory_mb=128, run_timeout_s=5.0, worker_max_runs=10_000)
    with WorkerPool(settings, executor="runtime.sandbox.executor") as pool:
        attacks = [
            POISON_BY_CYCLE,
            POISON_BY_RE_CACHE,
            "import collections\ndef main(event):\n    collections.ChainMap.register(str)\n",
        ]
        for index, source in enumerate(attacks):
            pool.run(job(source, f"attack{index}"), no_secret)
        for _ in range(2):
            result = pool.run(job(VICTIM_DECIMAL_AND_ABC, "victim"), no_secret)
            assert result.status == "success", result.error
            assert result.result == VICTIM_EXPECTED
