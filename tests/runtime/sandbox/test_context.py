"""logic.get_context(): the whole context, the same objects the entry point takes by name."""

from __future__ import annotations

import pytest

from runtime.sandbox.context import CONTEXT_PARTS, Context
from store.errors import DeployError

SCHEDULED = {
    "scheduled": {
        "scheduled_at": "2026-06-01T08:05:00.000000Z",
        "cron": "*/5 * * * *",
        "start_at": "2026-06-01T08:00:00.000000Z",
        "end_at": None,
    },
    "trigger": {"type": "schedule", "triggered_at": "2026-06-01T08:05:00.1Z", "event_id": None},
    "function_info": {"id": "f1", "name": "ticker", "version": 3, "owner": "user:root"},
}


def test_context_fields_are_the_parameter_names():
    assert (
        Context._fields
        == CONTEXT_PARTS
        == (
            "event",
            "scheduled",
            "trigger",
            "function_info",
            "secrets",
            "env",
            "ledger_change",
        )
    )


def test_get_context_holds_every_part(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main():
            ctx = logic.get_context()
            s = ctx.scheduled
            return [ctx.event, s.scheduled_at, s.cron, s.start_at, s.end_at, ctx.trigger.type,
                    ctx.function_info.name, ctx.function_info.version, list(ctx.secrets), repr(ctx.secrets)]
        """,
        context=SCHEDULED,
        declared=("API_KEY",),
    )
    assert ran.status == "success", ran.error
    assert ran.result == [
        None,
        "2026-06-01T08:05:00.000000Z",
        "*/5 * * * *",
        "2026-06-01T08:00:00.000000Z",
        None,
        "schedule",
        "ticker",
        3,
        ["API_KEY"],
        "<secrets: API_KEY>",
    ]
    assert ran.host.reads == []  # listing the context reads no secret


def test_get_context_returns_the_objects_the_parameters_get(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main(event, secrets, trigger):
            ctx = logic.get_context()
            return [ctx is logic.get_context(), ctx.event is event, ctx.secrets is secrets, ctx.trigger is trigger]
        """,
        context={"event": {"name": "e"}, "trigger": {"type": "event"}},
    )
    assert ran.result == [True, True, True, True]


def test_secrets_read_through_the_context_are_checked_and_recorded(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main():
            store = logic.get_context().secrets
            value = store.API_KEY + store["API_KEY"] + store.get("API_KEY")
            try:
                store.OTHER
            except KeyError as exc:
                return [value, str(exc)]
        """,
        secrets={"API_KEY": "k", "OTHER": "never"},
        declared=("API_KEY",),
    )
    assert ran.status == "success", ran.error
    assert ran.result == ["kkk", "secret 'OTHER' is not declared in this function's manifest; declared: API_KEY"]
    assert ran.host.reads == ["API_KEY", "API_KEY", "API_KEY"]  # every read goes to the host, none cached


def test_a_run_without_parameters_still_has_its_context(sandbox_run):
    ran = sandbox_run("import logic\ndef main():\n    return logic.get_context().event.name\n")
    assert ran.result == "sensor"


def test_the_context_is_read_only(sandbox_run):
    for statement in (
        "ctx.event = None",
        "ctx.scheduled = 1",
        "ctx.event.name = 'x'",
        "setattr(ctx, 'secrets', {})",
        "ctx.secrets.API_KEY = 'x'",
        "getattr(ctx.secrets, '_read')",
    ):
        ran = sandbox_run(
            f"import logic\ndef main():\n    ctx = logic.get_context()\n    {statement}\n    return 'changed'\n",
            declared=("API_KEY",),
        )
        assert ran.status == "error", statement


def test_the_context_is_not_a_result_and_shows_no_value(sandbox_run):
    ran = sandbox_run(
        "import logic\ndef main():\n    print(logic.get_context())\n    return logic.get_context()\n",
        secrets={"API_KEY": "sekrit-value"},
        declared=("API_KEY",),
    )
    assert ran.status == "error"  # a named tuple holding the accessor is no JSON
    assert "sekrit-value" not in repr(ran.host.logs) and ran.host.reads == []


def test_undeclared_secret_literals_through_get_context_fail_the_deploy(sandbox_run):
    with pytest.raises(DeployError) as info:
        sandbox_run(
            """
            import logic
            from logic import get_context
            def main():
                ok = get_context().secrets.get("OK")
                return [logic.get_context().secrets.NOPE, get_context().secrets["ALSO"], ok]
            """,
            declared=("OK",),
        )
    assert sorted(info.value.problems) == [
        "function.py:6: secret 'ALSO' is not declared in the manifest (declared: OK)",
        "function.py:6: secret 'NOPE' is not declared in the manifest (declared: OK)",
    ]
