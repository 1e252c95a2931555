"""Promise 4, the part that is safe in-process: limits that end cleanly in well under a second.

The hard limits (loops, memory, sleep, CPU) are data in attacks_resource.py,
run by the worker tests through the real pool.
"""

from __future__ import annotations

import pytest

from runtime.sandbox.testing import default_limits
from runtime.sandbox.tracebacks import describe_exception


def test_recursion_error_is_caught_and_the_next_run_is_fine(sandbox_run):
    ran = sandbox_run("def f(n):\n    return f(n + 1)\ndef main(event):\n    return f(0)\n")
    assert ran.status == "error" and ran.error["type"] == "RecursionError"
    assert sandbox_run("def main(event):\n    return 1\n").result == 1


def test_recursion_caught_by_user_code_still_ends(sandbox_run):
    ran = sandbox_run("""
        def f(n):
            try:
                return f(n + 1)
            except RecursionError:
                return n
        def main(event):
            return f(0) > 100
        """)
    assert ran.result is True


def test_output_flood_is_truncated_at_the_cap(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main(event):
            for i in range(20000):
                print("x" * 100)
                logic.log.error("y" * 100)
            return "survived"
        """,
        limits=default_limits(log_max_bytes=64 * 1024),
    )
    assert ran.result == "survived"
    assert sum(len(m) + 1 for m in ran.host.messages[:-1]) == 64 * 1024  # bytes and newlines
    assert ran.host.logs[-1] == ("warning", "[log truncated: limit of 65536 bytes reached]")
    assert len(ran.host.logs) < 700


def test_one_giant_log_line_is_cut(sandbox_run):
    ran = sandbox_run("def main(event):\n    print('z' * 10**6)\n", limits=default_limits(log_max_bytes=1000))
    assert ran.host.messages == ["z" * 999, "[log truncated: limit of 1000 bytes reached]"]


@pytest.mark.parametrize(
    "expression,message",
    [
        ("'x' * (10**6)", "return value is over 262144 bytes as JSON"),
        ("[1] * (10**6)", "the limit is 262144 bytes"),
        ("{str(i): i for i in range(10**5)}", "the limit is 262144 bytes"),
        ("10 ** 5000", "holds an int too large to serialise"),
    ],
)
def test_huge_results_are_refused(sandbox_run, expression, message):
    ran = sandbox_run(f"def main(event):\n    return {expression}\n")
    assert ran.status == "error" and message in ran.error["message"]


def test_deeply_nested_result_is_refused(sandbox_run):
    ran = sandbox_run("def main(event):\n    x = []\n    for i in range(10000):\n        x = [x]\n    return x\n")
    assert ran.error["type"] == "ResultError" and "nested deeper than 100 levels" in ran.error["message"]


def test_self_referencing_dict_is_refused(sandbox_run):
    ran = sandbox_run("def main(event):\n    d = {}\n    d['d'] = d\n    return d\n")
    assert ran.error["message"] == "return value refers to itself at $['d']"


def test_int_string_conversion_limit_is_an_ordinary_error(sandbox_run):
    ran = sandbox_run("def main(event):\n    return int('9' * 5000)\n")
    assert ran.error["type"] == "ValueError"


def test_events_flood_is_capped(sandbox_run):
    ran = sandbox_run("""
        import logic
        def main(event):
            sent = 0
            for i in range(1000):
                try:
                    logic.publish("e", "x")
                    sent += 1
                except logic.PublishLimitError:
                    pass
            return sent
        """)
    assert ran.result == 100 and len(ran.host.events) == 100


def test_unprintable_exception_is_described():
    class Nasty(Exception):
        def __str__(self):
            raise RuntimeError("no")

    described = describe_exception(Nasty(), "function.py", ())
    assert described["message"] == "<unprintable Nasty object>"


def test_exception_chain_cycle_does_not_hang():
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert describe_exception(first, "function.py", ())["type"] == "ValueError"
