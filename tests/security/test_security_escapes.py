"""Promise 3 (language layer): user code cannot reach the host.

Each attack goes through compile_function + run_function in-process and must
be refused with a clear message — at deploy (DeployError) or at run (status
"error") — and never succeed. `pattern` is matched against the deploy problems
or against "<error type>: <message>" of the run.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from runtime.sandbox import run_function
from runtime.sandbox.guards import SHARED_BUILTINS
from runtime.sandbox.modules import SHARED_FACADES
from runtime.sandbox.testing import RecordingHost, compile_source, default_limits
from store.errors import DeployError

UNDERSCORE = r"starts with \"?_|not allowed in Logic functions"
BLOCKED = r"not allowed in Logic functions"
NOT_AVAILABLE = r"not available in Logic functions"
NO_WRITE = r"cannot change"
NAME_ERROR = r"NameError: name '\w+' is not defined"
NO_ATTR = r"AttributeError: module '[\w.]+' has no attribute '\w+' in Logic functions"


def a(id: str, body: str, pattern: str, prelude: str = ""):
    source = textwrap.dedent(prelude) + "def main(event, secrets):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return pytest.param(source, pattern, id=id)


ATTACKS = [
    # --- introspection and dunder paths -----------------------------------------------------------
    a("class-bases-subclasses", "return ().__class__.__bases__[0].__subclasses__()", UNDERSCORE),
    a("getattr-class", "return getattr((), '__class__')", BLOCKED),
    a("getattr-computed-name", "n = '_' + '_cla' + 'ss__'\nreturn getattr(1, n)", BLOCKED),
    a(
        "getattr-chr-built-name",
        "n = ''.join(map(chr, [95, 95, 99, 108, 97, 115, 115, 95, 95]))\nreturn getattr(1, n)",
        BLOCKED,
    ),
    a("str-subclass-name", "return getattr(1, S('__class__'))", "must be a str", prelude="class S(str):\n    pass\n"),
    a(
        "str-subclass-eq-everything",
        "return getattr(1, S('real'))",
        "must be a str",
        prelude="class S(str):\n    def __eq__(self, other):\n        return True\n",
    ),
    a("function-globals", "return main.__globals__", UNDERSCORE),
    a("getattr-function-globals", "return getattr(main, '__globals__')", BLOCKED),
    a("lambda-code", "return getattr(lambda: 0, '__code__')", BLOCKED),
    a("builtins-name", "return __builtins__", UNDERSCORE),
    a("import-dunder", "return __import__('os')", UNDERSCORE),
    a("globals-builtin", "return globals()", NAME_ERROR),
    a("vars-builtin", "return vars(main)", NAME_ERROR),
    a("type-builtin", "return type(1).__subclasses__", UNDERSCORE),
    a("type-call-runtime", "t = type\nreturn t(1)", NAME_ERROR),
    a("str-mro", "return str.mro()", r'"mro" is not allowed'),
    a("getattr-mro", "return getattr(str, 'm' + 'ro')()", BLOCKED),
    a("object-subclasses", "return getattr(object, '__subclasses__')()", BLOCKED),
    a("super-setattr", "return getattr(super(A, A()), '__setattr__')", BLOCKED, prelude="class A:\n    pass\n"),
    a("builtin-self", "return getattr(len, '__self__')", BLOCKED),
    a("facade-dict", "import json\nreturn getattr(json, '__dict__')", BLOCKED),
    a(
        "metaclass-keyword",
        "return 1",
        r'keyword argument "metaclass" is not allowed',
        prelude="class A(metaclass=object):\n    pass\n",
    ),
    a(
        "define-getattr-dunder",
        "return 1",
        UNDERSCORE,
        prelude="class A:\n    def __getattribute__(self, n):\n        return 1\n",
    ),
    a("slots-name", "return 1", UNDERSCORE, prelude="class A:\n    __slots__ = ()\n"),
    a("exec-call", "exec('import os')", r"Exec calls are not allowed"),
    a("eval-call", "return eval('1')", r"Eval calls are not allowed"),
    a("exec-by-alias", "f = getattr(print, 'x', None)\nreturn compile('1', 'f', 'eval')", NAME_ERROR),
    a("open-file", "return open('/etc/passwd').read()", NAME_ERROR),
    a("breakpoint", "breakpoint()", r"\"breakpoint\" is a reserved name"),
    a("positional-only-shadow-guard", "return 1", UNDERSCORE, prelude="def f(_getattr_, /):\n    return _getattr_\n"),
    a("dir-listing", "return dir(1)", NAME_ERROR),
    # --- imports ------------------------------------------------------------------------------------
    a("import-os", "import os\nreturn os.getcwd()", NOT_AVAILABLE),
    a("import-sys", "import sys\nreturn sys.modules", NOT_AVAILABLE),
    a("import-builtins", "import builtins\nreturn 1", NOT_AVAILABLE),
    a("import-operator", "import operator\nreturn operator.attrgetter('__class__')(1)", NOT_AVAILABLE),
    a("import-codecs", "import codecs\nreturn 1", NOT_AVAILABLE),
    a("import-inspect", "import inspect\nreturn 1", NOT_AVAILABLE),
    a("import-types", "import types\nreturn 1", NOT_AVAILABLE),
    a("import-importlib", "import importlib\nreturn 1", NOT_AVAILABLE),
    a("import-submodule", "import json.decoder\nreturn 1", NOT_AVAILABLE),
    a("from-submodule-sysmodules-fallback", "from json import decoder\nreturn str(decoder)", NOT_AVAILABLE),
    a("from-collections-abc", "from collections import abc\nreturn 1", NOT_AVAILABLE),
    a("relative-import", "from . import json\nreturn 1", r"relative imports are not allowed"),
    a("alias-then-submodule", "import json as j\nreturn j.decoder", NO_ATTR),
    a("from-string-formatter", "from string import Formatter\nreturn 1", NOT_AVAILABLE),
    a("string-formatter-attr", "import string\nreturn string.Formatter()", NO_ATTR),
    a("from-functools-wraps", "from functools import update_wrapper\nreturn 1", NOT_AVAILABLE),
    a("from-decimal-getcontext", "from decimal import getcontext\nreturn 1", NOT_AVAILABLE),
    a("from-uuid-getnode", "from uuid import getnode\nreturn getnode()", NOT_AVAILABLE),
    a(
        "runtime-import-of-computed-name",
        "import json\nm = getattr(json, 'lo' + 'ads')\nreturn m.__module__",
        UNDERSCORE,
    ),
    # --- format-string traversal ----------------------------------------------------------------------
    a("str-format-class", "return '{0.__class__}'.format(1)", r'"format" is not allowed'),
    a("str-format-getattr", "return getattr('{0.__class__}', 'for' + 'mat')(1)", BLOCKED),
    a("str-class-format", "return getattr(str, 'for' + 'mat')('{0.__globals__}', main)", BLOCKED),
    a("format-map", "return '{x.__class__}'.format_map({'x': 1})", r'"format_map" is not allowed'),
    a("fstring-dunder", "return f'{main.__globals__}'", UNDERSCORE),
    a("partial-over-format", "import functools\nf = functools.partial(getattr, 'x')\nreturn f('format')", BLOCKED),
    a("map-getattr", "return list(map(getattr, [1], ['__class__']))", BLOCKED),
    # --- frames, generators, tracebacks ---------------------------------------------------------------
    a("generator-gi-frame", "g = (x for x in [1])\nreturn g.gi_frame.f_globals", r"restricted name"),
    a("generator-gi-frame-getattr", "g = (x for x in [1])\nreturn getattr(g, 'gi_' + 'frame')", BLOCKED),
    a("generator-gi-code", "g = (x for x in [1])\nreturn getattr(g, 'gi_code')", BLOCKED),
    a("generator-yieldfrom", "g = (x for x in [1])\nreturn getattr(g, 'gi_yieldfrom')", BLOCKED),
    a(
        "exception-traceback",
        "try:\n    1 / 0\nexcept Exception as e:\n    return e.__traceback__.tb_frame",
        UNDERSCORE,
    ),
    a(
        "exception-traceback-getattr",
        "try:\n    1 / 0\nexcept Exception as e:\n    return getattr(e, '__traceback__')",
        BLOCKED,
    ),
    a(
        "attributeerror-obj",
        "import json\ntry:\n    json.nope\nexcept AttributeError as e:\n    return getattr(e, 'obj')",
        BLOCKED,
    ),
    a(
        "async-coroutine-frame",
        "return 1",
        r"AsyncFunctionDef statements are not allowed",
        prelude="async def f():\n    pass\n",
    ),
    a("except-star", "try:\n    pass\nexcept* ValueError:\n    pass", r"TryStar statements are not allowed"),
    a("match-class-pattern", "match 1:\n    case int(real=r):\n        return r", r"Match statements are not allowed"),
    # --- internals of allowed modules -------------------------------------------------------------------
    a("json-encoder-globals", "import json\nreturn getattr(json.JSONEncoder.encode, '__globals__')", BLOCKED),
    a("json-decoder-attr", "import json\nreturn json.decoder", NO_ATTR),
    a("re-internals", "import re\nreturn re.sre_compile", NO_ATTR),
    a("re-pattern-class", "import re\nreturn getattr(re.compile('a'), '__class__')", BLOCKED),
    a("functools-partial-reduce", "import functools\nreturn getattr(functools.partial(len), '__reduce__')()", BLOCKED),
    a("decimal-default-context", "import decimal\nreturn decimal.DefaultContext", NO_ATTR),
    a("datetime-module-sys", "import datetime\nreturn datetime.sys", NO_ATTR),
    a("random-bound-self", "import random\nreturn getattr(random.random, '__self__')", BLOCKED),
    a("random-class-private", "import random\nreturn getattr(random.Random, '_randbelow')", BLOCKED),
    a("hashlib-new-globals", "import hashlib\nreturn getattr(hashlib.new, '__globals__')", BLOCKED),
    a("hmac-private", "import hmac\nh = hmac.new(b'k', b'm', 'sha256')\nreturn getattr(h, '_hmac')", BLOCKED),
    a("statistics-sys", "import statistics\nreturn statistics.sys", NO_ATTR),
    a("base64-binascii", "import base64\nreturn base64.binascii", NO_ATTR),
    a("uuid-os", "import uuid\nreturn uuid.os", NO_ATTR),
    a(
        "collections-namedtuple-globals",
        "import collections\nreturn getattr(collections.namedtuple, '__globals__')",
        BLOCKED,
    ),
    a("time-sleep-self", "import time\nreturn getattr(time.sleep, '__self__')", BLOCKED),
    a("logic-publish-self", "import logic\nreturn getattr(logic.publish, '__self__')", BLOCKED),
    a("logic-lambda-closure", "import logic\nreturn getattr(logic.log.info, '__closure__')", BLOCKED),
    a("secrets-private-reader", "return getattr(secrets, '_read')", BLOCKED),
    a("secrets-class", "return getattr(secrets, '__class__')", BLOCKED),
    a(
        "secrets-str-subclass-name",
        "return secrets[S('OTHER')]",
        r"SecretNotDeclared: secret 'OTHER' is not declared",
        prelude="class S(str):\n    def __eq__(self, other):\n        return True\n",
    ),
    a("secrets-undeclared-literal", "return secrets.OTHER", r"secret 'OTHER' is not declared in the manifest"),
    a("secrets-undeclared-computed", "return secrets['OTH' + 'ER']", r"SecretNotDeclared"),
    a(
        "secrets-template-undeclared",
        "import string\nreturn string.Template('$OTHER').substitute(secrets)",
        r"SecretNotDeclared",
    ),
    # --- writes into shared state -----------------------------------------------------------------------
    a("write-facade-attr", "import json\njson.dumps = None", NO_WRITE),
    a("delete-facade-attr", "import json\ndel json.dumps", NO_WRITE),
    a("setattr-facade", "import json\nsetattr(json, 'dumps', None)", NO_WRITE),
    a("delattr-facade", "import re\ndelattr(re, 'compile')", NO_WRITE),
    a("write-logic-publish", "import logic\nlogic.publish = print", NO_WRITE),
    a("write-logic-log", "import logic\nlogic.log.info = None", NO_WRITE),
    a("write-encoding", "import logic\nsetattr(logic.encoding, 'base64_encode', None)", NO_WRITE),
    a("write-secret-attr", "secrets.API_KEY = 'x'", NO_WRITE),
    a("write-secret-item", "secrets['API_KEY'] = 'x'", NO_WRITE),
    a("write-host-class", "import fractions\nfractions.Fraction.limit_denominator = None", NO_WRITE),
    a("write-template-delimiter", "import string\nstring.Template.delimiter = '#'", NO_WRITE),
    a("write-json-encoder-class", "import json\njson.JSONEncoder.item_separator = ';'", NO_WRITE),
    a("write-counter-method", "import collections\ncollections.Counter.most_common = None", NO_WRITE),
    a("write-math-constant", "import math\nmath.pi = 3", NO_WRITE),
    a("write-event", "event.data = 'x'", NO_WRITE),
    a(
        "mutate-hashlib-set",
        "import hashlib\nhashlib.algorithms_available.add('x')",
        r"'frozenset' object has no attribute 'add'",
    ),
    a("object-setattr", "getattr(object, '__setattr__')(1, 'x', 1)", BLOCKED),
    # --- results ------------------------------------------------------------------------------------------
    a("return-secrets-accessor", "return secrets", r"ResultError: return value is not JSON-serialisable: 'Secrets'"),
    a("return-module", "import json\nreturn json", r"ResultError: return value is not JSON-serialisable"),
    a("return-self-reference", "x = []\nx.append(x)\nreturn x", r"ResultError: return value refers to itself"),
    a(
        "return-dict-subclass",
        "return D(a=1)",
        r"ResultError: return value is not JSON-serialisable: 'D'",
        prelude="class D(dict):\n    def items(self):\n        return [('leak', 1)]\n",
    ),
]


def attempt(source: str) -> tuple[str, str]:
    """('deploy', problems) or (status, "Type: message")."""
    try:
        fn = compile_source(source, declared_secrets=["API_KEY"])
    except DeployError as exc:
        return "deploy", "\n".join(exc.problems)
    host = RecordingHost({"API_KEY": "s3cr3t-value", "OTHER": "other-value"})
    outcome = run_function(fn, {"event": {"data": "x"}}, host, declared_secrets=["API_KEY"], limits=default_limits())
    assert "other-value" not in repr(outcome) and "other-value" not in repr(host.logs)
    if outcome.status == "success":
        return "success", outcome.result_json or ""
    return outcome.status, f"{outcome.error['type']}: {outcome.error['message']}"


def test_there_are_at_least_60_attacks():
    assert len(ATTACKS) >= 60
    assert len({p.id for p in ATTACKS}) == len(ATTACKS)


@pytest.mark.parametrize("source,pattern", ATTACKS)
def test_attack_is_refused(source, pattern):
    where, text = attempt(source)
    assert where in ("deploy", "error"), f"attack succeeded: {text}"
    assert re.search(pattern, text), f"{where}: {text}"


def test_shared_state_is_intact_after_the_attacks():
    import json

    assert SHARED_FACADES["json"].dumps is json.dumps
    assert "open" not in SHARED_BUILTINS and SHARED_BUILTINS["len"] is len
    import fractions
    import string

    assert string.Template.delimiter == "$"
    assert callable(fractions.Fraction.limit_denominator)
