"""Guards: attribute reads, writes, builtins, classes, print."""

from __future__ import annotations

import pytest

from runtime.sandbox.guards import FORBIDDEN_BUILTINS, SHARED_BUILTINS, guarded_getattr, make_write_guard


class Plain:
    visible = 1


@pytest.mark.parametrize(
    "name",
    [
        "__class__",
        "_private",
        "gi_frame",
        "f_globals",
        "tb_frame",
        "cr_frame",
        "ag_frame",
        "gi_code",
        "f_back",
        "format",
        "format_map",
        "mro",
    ],
)
def test_getattr_refuses_blocked_names(name):
    with pytest.raises(AttributeError, match="not allowed in Logic functions"):
        guarded_getattr(Plain(), name)


def test_getattr_requires_exact_str_names():
    class Sneaky(str):
        pass

    with pytest.raises(TypeError, match="must be a str"):
        guarded_getattr(Plain(), Sneaky("visible"))


def test_getattr_reads_and_defaults():
    assert guarded_getattr(Plain(), "visible") == 1
    assert guarded_getattr(Plain(), "missing", 5) == 5
    with pytest.raises(AttributeError):
        guarded_getattr(Plain(), "missing")


def test_getattr_refuses_frames_entirely():
    import sys

    with pytest.raises(AttributeError, match="frame objects are not accessible"):
        guarded_getattr(sys._getframe(), "f_lineno")


def test_write_guard_allows_only_run_objects():
    own = type("Own", (), {})
    guard = make_write_guard({own})
    for ob in ([], {}, set(), bytearray(), own(), own):
        assert guard(ob) is ob
    for ob in (Plain(), Plain, (), "s", len):
        with pytest.raises(TypeError, match="cannot change"):
            guard(ob)


def test_forbidden_builtins_are_absent():
    assert not FORBIDDEN_BUILTINS & SHARED_BUILTINS.keys()
    for name in (
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
        "__import__",
    ):
        assert name not in SHARED_BUILTINS


def test_builtins_hold_no_module():
    import types

    assert not [k for k, v in SHARED_BUILTINS.items() if isinstance(v, types.ModuleType)]


@pytest.mark.parametrize(
    "name",
    [
        "open",
        "eval",
        "compile",
        "type",
        "vars",
        "globals",
        "locals",
        "input",
        "help",
        "memoryview",
        "dir",
        "id",
        "exit",
        "quit",
    ],
)
def test_forbidden_builtin_is_a_name_error_at_run(sandbox_run, name):
    ran = sandbox_run(f"def main(event):\n    return {name}\n")
    assert ran.status == "error"
    assert ran.error["type"] == "NameError" and name in ran.error["message"]


def test_ordinary_builtins_work(sandbox_run):
    ran = sandbox_run("""
        def main(event):
            return [len("ab"), sorted([2, 1]), list(zip("ab", range(2))), tuple("ab"), list(range(2000))[-1],
                    sum(x for x in range(4)), min(3, 1), any([0, 1]), isinstance(1, int), hasattr("", "upper"),
                    hasattr("", "__class__"), getattr("a", "upper")(), bytes(2).hex(), format(3.14159, ".2f"),
                    list(reversed([1, 2])), divmod(7, 2), round(2.5), abs(-1), chr(65), ord("A")]
        """)
    assert ran.status == "success", ran.error
    assert ran.result == [
        2,
        [1, 2],
        [["a", 0], ["b", 1]],
        ["a", "b"],
        1999,
        6,
        1,
        True,
        True,
        True,
        False,
        "A",
        "0000",
        "3.14",
        [2, 1],
        [3, 1],
        2,
        1,
        "A",
        65,
    ]


def test_classes_are_allowed_and_writable(sandbox_run):
    ran = sandbox_run("""
        class Base:
            kind = "base"
            def __init__(self, x):
                self.x = x
        class Child(Base):
            def double(self):
                return self.x * 2
        def main(event):
            c = Child(2)
            c.y = 3
            setattr(c, "z", 4)
            Child.kind = "child"
            del c.y
            return [c.double(), c.z, c.kind, isinstance(c, Base), hasattr(c, "y")]
        """)
    assert ran.result == [4, 4, "child", True, False]


def test_containers_are_writable(sandbox_run):
    ran = sandbox_run("""
        import collections
        def main(event):
            d = {}
            d["a"] = 1
            l = [0]
            l[0] = 2
            l += [3]
            dq = collections.deque()
            dq.append(1)
            od = collections.OrderedDict()
            od["k"] = 1
            dd = collections.defaultdict(list)
            dd["x"].append(1)
            del d["a"]
            return [d, l, list(dq), od, dd]
        """)
    assert ran.result == [{}, [2, 3], [1], {"k": 1}, {"x": [1]}]


def test_print_goes_to_the_log(sandbox_run):
    ran = sandbox_run("""
        def main(event):
            print("a", 1, None)
            print("x", "y", sep="-", end="!")
            print()
        """)
    assert ran.host.logs == [("info", "a 1 None"), ("info", "x-y!"), ("info", "")]


def test_print_to_a_file_is_refused(sandbox_run):
    ran = sandbox_run("import json\ndef main(event):\n    print('x', file=json)\n")
    assert ran.error["message"] == "print(file=...) is not supported in Logic functions"


def test_unpacking_and_inplace_ops(sandbox_run):
    ran = sandbox_run("""
        def main(event):
            a, (b, c) = 1, (2, 3)
            first, *rest = [1, 2, 3]
            n = 1
            n *= 5
            n -= 1
            n **= 2
            s = "a"
            s += "b"
            out = []
            for k, v in {"x": 1}.items():
                out.append((k, v))
            return [a, b, c, first, rest, n, s, out]
        """)
    assert ran.result == [1, 2, 3, 1, [2, 3], 16, "ab", [["x", 1]]]


def test_the_attribute_cache_never_admits_what_the_checks_refuse(sandbox_run):
    # Warm the (type, name) cache with allowed reads, then try the refused ones on the
    # same types: each must still be refused (the cache remembers only passes).
    from runtime.sandbox.guards import _PASSED, guarded_getattr

    assert guarded_getattr("abc", "upper")() == "ABC"
    assert (str, "upper") in _PASSED
    for ob, name in [
        ("abc", "format"),
        ("abc", "format_map"),
        ("abc", "__class__"),
        ([], "__class__"),
        ({}, "__init__"),
        (str, "format"),
        (str, "mro"),
    ]:
        with pytest.raises((AttributeError, NotImplementedError, TypeError)):
            guarded_getattr(ob, name)
        assert (type(ob), name) not in _PASSED
    # Classes are never cached: their checks depend on the class, not only its type.
    assert not any(kind is type for kind, _ in _PASSED)
    # At run time too (a computed name escapes the deploy check), after the cache is warm.
    ran = sandbox_run(
        "def main(event):\n    s = 'x'\n    for _ in range(3):\n        s.upper()\n"
        "    return getattr(s, 'for' + 'mat')()\n"
    )
    assert ran.status == "error" and "format" in ran.error["message"]
