"""Deploy checks: size, nesting, syntax, policy, entry point, parameters, secrets, imports."""

from __future__ import annotations

import textwrap

import pytest

from runtime.sandbox.testing import compile_source
from store.errors import DeployError


def problems(source: str, **kwargs) -> list[str]:
    with pytest.raises(DeployError) as info:
        compile_source(textwrap.dedent(source), **kwargs)
    return info.value.problems


def test_valid_function_compiles_with_params_in_order():
    fn = compile_source("def main(secrets, event, *, trigger=None):\n    return 1\n", filename="f.py")
    assert fn.params == ("secrets", "event", "trigger")
    assert fn.filename == "f.py" and fn.entry == "main"
    assert fn.source_lines[0].startswith("def main")


def test_every_problem_is_collected_with_its_line():
    found = problems(
        """\
        import os
        def main(event, foo, secrets):
            x = event.__class__
            y = secrets.NOPE
            return _x
        """,
        filename="reformat.py",
    )
    assert found == [
        "reformat.py:1: module 'os' is not available in Logic functions; allowed modules: base64, binascii, "
        "cbor, collections, datetime, decimal, fractions, functools, hashlib, hmac, itertools, json, logic, math, "
        "random, re, statistics, string, struct, time, uuid, zlib",
        "reformat.py:2: parameter 'foo' of main() is not a context part; choose from event, scheduled, "
        "trigger, function_info, secrets, env, ledger_change",
        'reformat.py:3: "__class__" is an invalid attribute name because it starts with "_".',
        "reformat.py:4: secret 'NOPE' is not declared in the manifest (declared: none)",
        'reformat.py:5: "_x" is an invalid variable name because it starts with "_"',
    ]


def test_deploy_error_message_joins_problems():
    with pytest.raises(DeployError) as info:
        compile_source("def main(event):\n    return event.__dict__\n")
    assert str(info.value) == 'function.py:2: "__dict__" is an invalid attribute name because it starts with "_".'


def test_syntax_error_names_the_line():
    assert problems("def main(event):\n    return (\n") == ["function.py:2: syntax error: '(' was never closed"]


def test_compiler_level_syntax_error_is_a_problem():
    assert problems("return 1\ndef main(event):\n    return 1\n") == [
        "function.py:1: syntax error: 'return' outside function"
    ]


def test_null_byte_is_a_clean_problem():
    assert problems("x = 1\0\n")[0].startswith("function.py:1: syntax error:")


def test_non_text_source_is_refused():
    with pytest.raises(DeployError, match="source must be text"):
        compile_source(b"def main(event): return 1")  # type: ignore[arg-type]


def test_source_over_max_bytes_is_refused_before_parsing():
    assert problems("x = 1\n" * 100, max_bytes=100) == ["function.py:1: source is 600 bytes; the limit is 100 bytes"]


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "+".join(["1"] * 100_000),  # 100k-term expression
        "x = " + "-" * 100_000 + "1",  # unary chain
        "x = a" + ".b" * 100_000,  # attribute chain
        "x = f" + "()" * 50_000,  # call chain
        "x = " + "[" * 190 + "]" * 190,  # nested lists (below the tokenizer's 200)
        "x = " + "[" * 5000 + "]" * 5000,  # past the tokenizer's limit
        "x = " + "1 if 1 else " * 20_000 + "1",
        "x = " + "lambda: " * 20_000 + "1",
        "def main(event):\n    return " + "+".join(["1"] * 150),
    ],
    ids=["plus", "unary", "attr", "call", "lists190", "lists5000", "ifexp", "lambda", "plus150"],
)
def test_pathological_nesting_is_a_clean_deploy_error(source):
    found = problems(source)
    assert len(found) == 1
    assert "nested" in found[0] or "syntax error" in found[0]


def test_max_depth_is_configurable():
    source = "def main(event):\n    return " + "+".join(["1"] * 30) + "\n"
    compile_source(source)
    assert "nested too deeply (limit: depth 20)" in problems(source, max_depth=20)[0]


def test_entry_point_must_exist():
    assert problems("def handler(event):\n    return 1\n") == [
        "function.py:1: entry point 'main' is not defined: add a top-level 'def main(event):'"
    ]


def test_entry_point_may_be_named_in_the_manifest():
    assert compile_source("def handler(event):\n    return 1\n", entry="handler").entry == "handler"


def test_entry_point_must_be_a_def_not_an_assignment():
    assert "entry point 'main' is not defined" in problems("main = lambda event: 1\n")[0]


def test_nested_def_is_not_an_entry_point():
    assert "entry point 'main' is not defined" in problems("def outer():\n    def main(event):\n        return 1\n")[0]


@pytest.mark.parametrize(
    "signature,message",
    [
        ("*args", "main() cannot take *args"),
        ("event, **kw", "main() cannot take **kw"),
        ("event, /", "parameter 'event' of main() is positional-only"),
        ("request", "parameter 'request' of main() is not a context part"),
    ],
)
def test_entry_parameters(signature, message):
    found = problems(f"def main({signature}):\n    return 1\n")
    assert any(message in p for p in found), found


@pytest.mark.parametrize(
    "expression", ["secrets.OTHER", 'secrets["OTHER"]', 'secrets.get("OTHER")', 'secrets.get("OTHER", "x")']
)
def test_undeclared_secret_literals_fail_the_deploy(expression):
    found = problems(f"def main(secrets):\n    return {expression}\n", declared_secrets=["API_KEY", "TOKEN"])
    assert found == ["function.py:2: secret 'OTHER' is not declared in the manifest (declared: API_KEY, TOKEN)"]


def test_declared_secret_literals_pass():
    compile_source(
        'def main(secrets):\n    return [secrets.API_KEY, secrets["API_KEY"], secrets.get("API_KEY")]\n',
        declared_secrets=["API_KEY"],
    )


@pytest.mark.parametrize(
    "line,message",
    [
        ("from json import decoder", "cannot import 'decoder' from 'json'"),
        ("import json.decoder", "module 'json.decoder' is not available"),
        ("from . import json", "relative imports are not allowed"),
        ("from collections import abc", "cannot import 'abc' from 'collections'"),
        ("import sys", "module 'sys' is not available"),
        ("from logic import secrets", "cannot import 'secrets' from 'logic'"),
    ],
)
def test_imports_are_checked_at_deploy(line, message):
    found = problems(f"{line}\ndef main(event):\n    return 1\n")
    assert any(message in p and p.startswith("function.py:1:") for p in found), found


@pytest.mark.parametrize(
    "source,message",
    [
        ("x = '{}'.format(1)", '"format" is not allowed in Logic functions: str.format can read attributes'),
        ("x = '{a}'.format_map({})", '"format_map" is not allowed'),
        ("x = str.mro()", '"mro" is not allowed'),
        ("def g():\n    yield 1\nx = g().gi_frame", '"gi_frame" is a restricted name'),
        ("print(1)\nx = printed", '"printed" is not supported'),
        ("match 1:\n    case _:\n        pass", "Match statements are not allowed"),
        ("async def f():\n    pass", "AsyncFunctionDef statements are not allowed"),
        ("try:\n    pass\nexcept* ValueError:\n    pass", "TryStar statements are not allowed"),
        ("class A(metaclass=type):\n    pass", 'The keyword argument "metaclass" is not allowed'),
        ("exec('1')", "Exec calls are not allowed"),
        ("eval('1')", "Eval calls are not allowed"),
        ("def f(_getattr_, /):\n    pass", '"_getattr_" is an invalid variable name'),
    ],
)
def test_policy_violations(source, message):
    found = problems(source + "\ndef main(event):\n    return 1\n")
    assert any(message in p for p in found), found


def test_allowed_constructs_compile():
    compile_source(
        textwrap.dedent("""\
        import json, math
        from collections import Counter
        class Point:
            def __init__(self, x):
                self.x = x
            def __eq__(self, other):
                return self.x == other.x
        def gen():
            yield from range(3)
        def main(event, secrets):
            total = 0
            for i, j in enumerate(gen()):
                total += j
            with_walrus = (n := 2)
            pairs = {k: v for k, v in [("a", 1)]}
            try:
                raise ValueError("x")
            except ValueError as exc:
                msg = f"{exc!r} {math.pi:.2f}"
            finally:
                pass
            return [total, with_walrus, pairs, msg, Counter("aab")["a"]]
        """)
    )
