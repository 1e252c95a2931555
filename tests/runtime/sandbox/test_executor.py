"""run_function: context, secrets accessor, results, errors and statuses."""

from __future__ import annotations

import json

import pytest

import runtime.sandbox as sandbox
from runtime.sandbox import SecretAccessError, run_function
from runtime.sandbox.testing import RecordingHost, compile_source, default_limits


def test_public_surface_is_pinned():
    assert sorted(sandbox.__all__) == [
        "ALLOWED_MODULES",
        "CompiledFunction",
        "Host",
        "PublishLimitError",
        "RunLimits",
        "RunOutcome",
        "SecretAccessError",
        "SecretNotDeclared",
        "compile_function",
        "run_function",
    ]
    from runtime.sandbox import executor  # the contract's import path

    for name in (
        "Host",
        "SecretAccessError",
        "RunLimits",
        "CompiledFunction",
        "compile_function",
        "RunOutcome",
        "run_function",
    ):
        assert getattr(executor, name) is getattr(sandbox, name)


def test_design_example_runs(sandbox_run):
    ran = sandbox_run(
        """
        import json
        import logic

        def main(event, secrets):
            data = json.loads(event.data)
            logic.log.info("reading", data["i"])
            logic.publish("data-reformatted", {"id": data["i"], "auth": len(secrets.API_KEY)})
            return {"ok": True}
        """,
        secrets={"API_KEY": "abcd"},
        declared=("API_KEY",),
    )
    assert ran.status == "success", ran.error
    assert ran.result == {"ok": True}
    assert ran.host.logs == [("info", "reading 7")]
    assert ran.host.events == [("data-reformatted", '{"id":7,"auth":4}')]
    assert ran.host.reads == ["API_KEY"]


def test_context_parts_by_name_and_missing_parts_are_none(sandbox_run):
    ran = sandbox_run(
        """
        def main(function_info, trigger, scheduled, event):
            return [event.id, event.name, event.data, event.published_at, event.source,
                    trigger.type, trigger.triggered_at, trigger.event_id,
                    function_info.id, function_info.name, function_info.version, function_info.owner,
                    scheduled is None]
        """,
        context={
            "event": {"id": "e1", "name": "n", "data": None, "published_at": "t0", "source": "dev"},
            "trigger": {"type": "event", "triggered_at": "t1", "event_id": "e1"},
            "function_info": {"id": "f1", "name": "fn", "version": 3, "owner": "user:alice"},
        },
    )
    assert ran.result == ["e1", "n", None, "t0", "dev", "event", "t1", "e1", "f1", "fn", 3, "user:alice", True]


def test_scheduled_context(sandbox_run):
    ran = sandbox_run(
        "def main(scheduled, event):\n"
        "    return [scheduled.scheduled_at, scheduled.cron, scheduled.start_at, scheduled.end_at, event]\n",
        context={"scheduled": {"scheduled_at": "2024-01-01T00:05:00Z", "cron": "*/5 * * * *"}},
    )
    assert ran.result == ["2024-01-01T00:05:00Z", "*/5 * * * *", None, None, None]


def test_scheduled_context_carries_the_window(sandbox_run):
    window = {"start_at": "2024-01-01T00:00:00.000000Z", "end_at": "2024-02-01T00:00:00.000000Z"}
    ran = sandbox_run(
        "def main(scheduled):\n    return [scheduled.start_at, scheduled.end_at]\n",
        context={"scheduled": {"scheduled_at": "2024-01-01T00:05:00Z", "cron": "*/5 * * * *", **window}},
    )
    assert ran.result == [window["start_at"], window["end_at"]]


def test_context_is_read_only(sandbox_run):
    ran = sandbox_run("def main(event):\n    event.data = 'x'\n")
    assert ran.error["type"] == "TypeError" and "cannot change a 'Event' object" in ran.error["message"]


def test_secrets_accessor_forms(sandbox_run):
    ran = sandbox_run(
        """
        def main(secrets):
            return [secrets.A, secrets["B"], secrets.get("A"), "A" in secrets, "Z" in secrets,
                    list(secrets), len(secrets), repr(secrets)]
        """,
        secrets={"A": "va", "B": "vb"},
        declared=("A", "B"),
    )
    assert ran.result == ["va", "vb", "va", True, False, ["A", "B"], 2, "<secrets: A, B>"]
    assert ran.host.reads == ["A", "B", "A"]  # membership, iteration, len and repr read nothing


def test_secret_reads_are_never_cached():
    class Rotating(RecordingHost):
        def log(self, level, message):  # the secret is updated while the run is in progress
            self.secrets["A"] = "new"

    host = Rotating({"A": "old"})
    fn = compile_source(
        "def main(secrets):\n    first = secrets.A\n    print('x')\n    return [first, secrets.A]\n",
        declared_secrets=["A"],
    )
    outcome = run_function(fn, {}, host, declared_secrets=["A"], limits=default_limits())
    assert json.loads(outcome.result_json) == ["old", "new"]


def test_undeclared_secret_at_run_names_the_declared_ones(sandbox_run):
    ran = sandbox_run(
        "def main(secrets):\n    name = 'OT' + 'HER'\n    return secrets[name]\n",
        secrets={"OTHER": "x"},
        declared=("A", "B"),
    )
    assert ran.error["type"] == "SecretNotDeclared"
    assert ran.error["message"] == "secret 'OTHER' is not declared in this function's manifest; declared: A, B"
    assert ran.host.reads == []


def test_undeclared_secret_is_both_key_and_attribute_error(sandbox_run):
    ran = sandbox_run(
        """
        def main(secrets):
            name = "NO" + "PE"
            try:
                secrets[name]
            except KeyError:
                pass
            return [hasattr(secrets, name), getattr(secrets, name, "dflt")]
        """,
        declared=("A",),
    )
    assert ran.result == [False, "dflt"]


def test_get_returns_default_when_the_host_cannot_read(sandbox_run):
    ran = sandbox_run("def main(secrets):\n    return secrets.get('A', 'fallback')\n", secrets={}, declared=("A",))
    assert ran.result == "fallback"


def test_host_refusal_surfaces_as_secret_access_error(sandbox_run):
    ran = sandbox_run("def main(secrets):\n    return secrets.A\n", secrets={}, declared=("A",))
    assert ran.error["type"] == "SecretAccessError" and "does not exist" in ran.error["message"]
    assert issubclass(SecretAccessError, Exception)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_generator_finalised_after_the_run_cannot_read_log_or_publish():
    host = RecordingHost({"A": "v"})
    fn = compile_source(
        """
import logic
kept = []
def main(secrets):
    def later():
        try:
            yield 1
        finally:
            logic.publish("late", secrets.A)
            print("late")
    it = later()
    next(it)
    kept.append(it)
    return 1
""",
        declared_secrets=["A"],
    )
    outcome = run_function(fn, {}, host, declared_secrets=["A"], limits=default_limits())
    assert outcome.status == "success"
    assert host.reads == [] and host.events == [] and host.logs == []


def test_fresh_globals_every_run():
    fn = compile_source("count = []\ndef main(event):\n    count.append(1)\n    return len(count)\n")
    host = RecordingHost()
    assert [
        json.loads(run_function(fn, {}, host, declared_secrets=(), limits=default_limits()).result_json)
        for _ in range(3)
    ] == [1, 1, 1]


def test_rebinding_a_builtin_does_not_leak_into_the_next_run():
    host = RecordingHost()
    poison = compile_source("def main(event):\n    global len\n    len = lambda x: 99\n    return len('a')\n")
    clean = compile_source("def main(event):\n    return len('a')\n")
    assert run_function(poison, {}, host, declared_secrets=(), limits=default_limits()).result_json == "99"
    assert run_function(clean, {}, host, declared_secrets=(), limits=default_limits()).result_json == "1"


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "null"),
        ("s", '"s"'),
        (1, "1"),
        (1.5, "1.5"),
        (True, "true"),
        ([1, (2, 3)], "[1,[2,3]]"),
        ({"a": {"b": []}}, '{"a":{"b":[]}}'),
    ],
)
def test_results_are_exact_json(sandbox_run, value, expected):
    ran = sandbox_run(f"def main(event):\n    return {value!r}\n")
    assert ran.outcome.result_json == expected


@pytest.mark.parametrize(
    "expression,message",
    [
        ("b'x'", "return value is not JSON-serialisable: 'bytes' at $ (use logic.encoding.base64_encode"),
        ("{1: 2}", "return value has a dict key of type 'int' at $"),
        ("[float('inf')]", "return value contains inf at $[0]"),
        ("{'a': {1, 2}}", "return value is not JSON-serialisable: 'set' at $['a'] (use a list)"),
        ("10 ** 5000", "holds an int too large to serialise"),
        ("main", "return value is not JSON-serialisable: 'function'"),
    ],
)
def test_results_that_are_not_json_fail_clearly(sandbox_run, expression, message):
    ran = sandbox_run(f"def main(event):\n    return {expression}\n")
    assert ran.status == "error" and ran.error["type"] == "ResultError"
    assert message in ran.error["message"]


def test_self_referencing_result_is_refused(sandbox_run):
    ran = sandbox_run("def main(event):\n    d = {}\n    d['me'] = [d]\n    return d\n")
    assert ran.error["message"] == "return value refers to itself at $['me'][0]"


def test_shared_but_acyclic_result_is_fine(sandbox_run):
    assert sandbox_run("def main(event):\n    x = [1]\n    return [x, x]\n").result == [[1], [1]]


def test_result_size_is_capped(sandbox_run):
    ran = sandbox_run("def main(event):\n    return 'x' * 200\n", limits=default_limits(result_max_bytes=100))
    assert ran.error["message"] == "return value is over 100 bytes as JSON; the limit is 100 bytes"
    ran = sandbox_run("def main(event):\n    return ['x'] * 100\n", limits=default_limits(result_max_bytes=100))
    assert "the limit is 100 bytes" in ran.error["message"]


def test_traceback_shows_user_lines_only(sandbox_run):
    ran = sandbox_run("""
        import json

        def parse(text):
            return json.loads(text)

        def main(event):
            return parse("{not json")
        """)
    assert ran.error["type"] == "JSONDecodeError"
    assert ran.error["traceback"] == (
        "Traceback (most recent call last):\n"
        '  File "function.py", line 8, in main\n'
        '    return parse("{not json")\n'
        '  File "function.py", line 5, in parse\n'
        "    return json.loads(text)\n"
        "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n"
    )
    assert "site-packages" not in ran.error["traceback"] and "runtime/sandbox" not in ran.error["traceback"]


def test_chained_exceptions_keep_to_user_lines(sandbox_run):
    ran = sandbox_run("""
        def main(event):
            try:
                1 / 0
            except ZeroDivisionError as exc:
                raise ValueError("wrapped") from exc
        """)
    tb = ran.error["traceback"]
    assert ran.error["message"] == "wrapped"
    assert tb.index("ZeroDivisionError: division by zero") < tb.index("direct cause") < tb.index("ValueError: wrapped")


def test_recursion_is_collapsed(sandbox_run):
    ran = sandbox_run("def f(n):\n    return f(n + 1)\ndef main(event):\n    return f(0)\n")
    assert ran.status == "error" and ran.error["type"] == "RecursionError"
    assert "Previous line repeated" in ran.error["traceback"]
    assert len(ran.error["traceback"]) < 5000


def test_long_messages_are_truncated(sandbox_run):
    ran = sandbox_run("def main(event):\n    raise ValueError('x' * 10000)\n")
    assert len(ran.error["message"]) < 2100 and ran.error["message"].endswith("more characters]")


@pytest.mark.parametrize("exc", ["SystemExit(3)", "KeyboardInterrupt()", "GeneratorExit()", "BaseException('b')"])
def test_base_exceptions_end_the_run_not_the_worker(sandbox_run, exc):
    ran = sandbox_run(f"def main(event):\n    raise {exc}\n")
    assert ran.status == "error" and ran.error["type"] == exc.split("(")[0]


def test_memory_error_is_its_own_status(sandbox_run):
    ran = sandbox_run("def main(event):\n    raise MemoryError()\n")
    assert ran.status == "memory_exceeded" and ran.error["type"] == "MemoryError"


def test_error_at_module_level_is_reported(sandbox_run):
    ran = sandbox_run("x = 1 / 0\ndef main(event):\n    return 1\n")
    assert ran.error["type"] == "ZeroDivisionError" and "line 1, in <module>" in ran.error["traceback"]


def test_entry_rebound_to_a_non_function(sandbox_run):
    ran = sandbox_run("def main(event):\n    return 1\nmain = 5\n")
    assert ran.error == {
        "type": "TypeError",
        "message": "entry point 'main' is not a function",
        "traceback": "TypeError: entry point 'main' is not a function\n",
    }
