"""`logic functions ...` and `logic runs show` through click's CliRunner (and twice
through a real subprocess), with the real worker pool behind `execute`.

Every refused deploy prints exactly one `Error: ...` line on stderr naming the
file and the line, exits 1 and deploys nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store import Store

ROOT = Path(__file__).resolve().parents[2]
VALUE = "cli-functions-secret-8d2f6a1b"
RUN_KEYS = [
    "id",
    "function_id",
    "function_version",
    "trigger",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "logs",
    "result",
    "error",
    "secrets_accessed",
    "events_published",
    "replay_of",
]

SOURCE = """\
import json
import logic

def main(event, secrets):
    data = json.loads(event.data) if event else {"i": 0}
    logic.log.info("reading", data["i"], "key", secrets.API_KEY)
    logic.publish("data-reformatted", {"id": data["i"], "auth": len(secrets.API_KEY)})
    if data.get("fail"):
        raise ValueError("refused reading " + str(data["i"]))
    return {"ok": True, "i": data["i"]}
"""

MANIFEST = {
    "name": "reformat",
    "description": "Reformat sensor JSON",
    "secrets": ["API_KEY"],
    "triggers": [{"type": "event", "event_name": "sensor-test"}, {"type": "schedule", "cron": "*/5 * * * *"}],
}


@pytest.fixture
def ready(cli, settings):
    """`logic init` done (through the library, faster), with the admin's secret API_KEY."""
    store, result = Store.initialize(settings)
    try:
        store.secrets.create(result.admin.owner, "API_KEY", VALUE)
    finally:
        store.close()
    return cli


def write_function(
    directory: Path, name: str = "reformat", source: str = SOURCE, manifest: dict | str | None = None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = (
        manifest
        if isinstance(manifest, str)
        else json.dumps({**MANIFEST, "name": name} if manifest is None else manifest, indent=2)
    )
    (directory / f"{name}.logic.json").write_text(text)
    if source is not None:
        (directory / f"{name}.py").write_text(source)
    return directory


def ok(result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def one_error(result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# deploy, list, get ----------------------------------------------------------------------


def test_deploy_list_get(ready, tmp_path):
    cli = ready
    directory = write_function(tmp_path / "reformat")
    out = ok(cli("functions", "deploy", str(directory)))
    assert out.startswith("Deployed reformat version 1 (") and out.endswith(").\n")
    again = json.loads(ok(cli("functions", "deploy", str(directory / "reformat.logic.json"), "--json")))
    assert again["version"] == 2 and again["name"] == "reformat"
    assert again["triggers"] == MANIFEST["triggers"] and again["secrets"] == ["API_KEY"]

    listing = json.loads(ok(cli("functions", "list", "--json")))
    assert [(f["name"], f["version"], f["enabled"]) for f in listing] == [("reformat", 2, True)]
    human = ok(cli("functions", "list"))
    assert "reformat" in human and "sensor-test, */5 * * * *" in human and "API_KEY" in human

    assert listing[0]["runs_today"] == {"success": 0, "error": 0, "timeout": 0}
    got = json.loads(ok(cli("functions", "get", "reformat", "--json")))
    assert "source" not in got
    assert {k: v for k, v in got.items() if k != "triggers"} == {
        k: v for k, v in listing[0].items() if k not in ("triggers", "runs_today")
    }
    # `get` adds what the store knows of each trigger: enabled, and a schedule's next tick
    event_trigger, schedule = got["triggers"]
    assert event_trigger == {**MANIFEST["triggers"][0], "enabled": True}
    next_fire = schedule.pop("next_fire_at")
    assert schedule == {**MANIFEST["triggers"][1], "enabled": True} and next_fire.endswith(":00.000000Z")
    assert json.loads(ok(cli("functions", "get", got["id"], "--json", "--source")))["source"] == SOURCE
    shown = ok(cli("functions", "get", "reformat", "--source"))
    assert "name:         reformat" in shown and 'secrets:      ["API_KEY"]' in shown and SOURCE in shown
    assert VALUE not in human + shown


def test_empty_listing_and_unknown_names(ready):
    cli = ready
    assert ok(cli("functions", "list")) == "No functions.\n"
    assert json.loads(ok(cli("functions", "list", "--json"))) == []
    for args in (
        ("get", "ghost"),
        ("logs", "ghost"),
        ("enable", "ghost"),
        ("disable", "ghost"),
        ("delete", "ghost"),
        ("execute", "ghost"),
    ):
        assert one_error(cli("functions", *args)) == "Error: function ghost does not exist"
    assert one_error(cli("runs", "show", "nope")) == "Error: run nope does not exist"


# execute, logs, runs show ----------------------------------------------------------------


def test_execute_a_path_is_a_test_run(ready, tmp_path):
    cli = ready
    directory = write_function(tmp_path / "reformat")
    record = json.loads(
        ok(cli("functions", "execute", str(directory), "--event", "sensor-test", "--data", '{"i": 7}', "--json"))
    )
    assert list(record) == RUN_KEYS
    assert record["status"] == "success" and record["result"] == {"ok": True, "i": 7}
    assert record["logs"][0]["message"] == "reading 7 key [[SENSITIVE]]"
    assert record["events_published"] == [
        {"name": "data-reformatted", "data": json.dumps({"id": 7, "auth": len(VALUE)}, separators=(",", ":"))}
    ]
    assert record["secrets_accessed"] == ["API_KEY"]
    assert json.loads(ok(cli("functions", "list", "--json"))) == []  # nothing deployed

    # A failing run still exits 0: the record says what happened.
    failed = cli(
        "functions",
        "execute",
        str(directory / "reformat.py"),
        "--event",
        "sensor-test",
        "--data",
        '{"i": 8, "fail": true}',
        "--json",
    )
    record = json.loads(ok(failed))
    assert record["status"] == "error" and record["error"]["message"] == "refused reading 8"
    assert 'File "reformat.py", line 9, in main' in record["error"]["traceback"]

    human = ok(cli("functions", "execute", str(directory), "--event", "sensor-test", "--data", '{"i": 9}'))
    lines = human.splitlines()
    assert lines[0].startswith("run ") and " SUCCESS " in lines[0] and "(manual" in lines[0]
    assert "  [info] reading 9 key [[SENSITIVE]]" in lines
    assert "  secrets read: API_KEY" in lines
    assert lines[-1] == '  result: {"ok": true, "i": 9}'
    assert VALUE not in human


def test_execute_a_name_then_logs_and_runs_show(ready, tmp_path):
    cli = ready
    ok(cli("functions", "deploy", str(write_function(tmp_path / "reformat"))))
    first = json.loads(
        ok(cli("functions", "execute", "reformat", "--event", "sensor-test", "--data", '{"i": 1}', "--json"))
    )
    second = ok(cli("functions", "execute", "reformat", "--event", "sensor-test", "--data", '{"i": 2, "fail": 1}'))
    assert " ERROR " in second.splitlines()[0]
    assert "  error: ValueError: refused reading 2" in second
    assert '    raise ValueError("refused reading " + str(data["i"]))' in second
    third = json.loads(ok(cli("functions", "execute", "reformat", "--json")))  # no event: manual, event None
    assert third["status"] == "success" and third["result"] == {"ok": True, "i": 0}
    assert third["trigger"] == {
        "type": "manual",
        "event_id": None,
        "scheduled_at": None,
        "cron": None,
        "event": None,
        "ledger_change": None,
    }

    runs = json.loads(ok(cli("functions", "logs", "reformat", "--json")))
    assert [r["status"] for r in runs] == ["success", "error", "success"]  # newest first
    assert runs[0] == third and runs[2] == first
    assert [r["id"] for r in json.loads(ok(cli("functions", "logs", "reformat", "--limit", "1", "--json")))] == [
        third["id"]
    ]
    human = ok(cli("functions", "logs", "reformat", "--limit", "2"))
    assert human.count("\nrun ") + human.startswith("run ") == 2
    assert json.loads(ok(cli("runs", "show", first["id"], "--json"))) == first
    shown = ok(cli("runs", "show", first["id"]))
    assert shown.startswith(f"run {first['id']}  SUCCESS") and "  published data-reformatted: " in shown
    assert VALUE not in human + shown + second


def test_logs_of_a_function_without_runs(ready, tmp_path):
    cli = ready
    ok(cli("functions", "deploy", str(write_function(tmp_path / "reformat"))))
    assert ok(cli("functions", "logs", "reformat")) == "No runs yet.\n"
    assert json.loads(ok(cli("functions", "logs", "reformat", "--json"))) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (("functions", "execute", "x", "--data", "d"), "--data needs --event"),
        (("functions", "logs", "x", "--limit", "0"), "Invalid value for '--limit'"),
        (("functions", "logs", "x", "--limit", "101"), "Invalid value for '--limit'"),
        (("functions", "deploy", "/no/such/dir"), "does not exist"),
        (("functions", "deploy"), "Missing argument"),
    ],
)
def test_usage_errors_exit_2(ready, args, message):
    result = ready(*args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("", None, "Error: event name must be 1-64 characters"),
        ("e" * 65, None, "Error: event name must be 1-64 characters"),
        ("ok", "x" * (100 * 1024 + 1), "Error: event data is 102401 bytes; the limit is 102400 bytes"),
    ],
)
def test_execute_refuses_a_bad_event(ready, tmp_path, name, data, message):
    directory = write_function(tmp_path / "reformat")
    args = ["functions", "execute", str(directory), "--event", name] + (["--data", data] if data else [])
    assert one_error(ready(*args)) == message


# enable, disable, delete ------------------------------------------------------------------


def test_enable_disable_delete(ready, tmp_path):
    cli = ready
    ok(cli("functions", "deploy", str(write_function(tmp_path / "reformat"))))
    ok(cli("functions", "execute", "reformat"))
    assert ok(cli("functions", "disable", "reformat")) == "Disabled reformat.\n"
    assert json.loads(ok(cli("functions", "get", "reformat", "--json")))["enabled"] is False
    published = json.loads(ok(cli("publish", "sensor-test", '{"i": 1}', "--json")))
    assert published["deliveries"] == 0  # a disabled function is not a target
    enabled = json.loads(ok(cli("functions", "enable", "reformat", "--json")))
    assert enabled["enabled"] is True
    assert json.loads(ok(cli("publish", "sensor-test", '{"i": 1}', "--json")))["deliveries"] == 1

    secret = json.loads(ok(cli("secrets", "get", "API_KEY", "--json")))
    assert secret["logic_functions"] == ["reformat"]
    assert one_error(cli("secrets", "delete", "API_KEY")).startswith("Error: secret API_KEY is in use by function")
    assert ok(cli("functions", "delete", "reformat")) == "Deleted function reformat.\n"
    assert json.loads(ok(cli("secrets", "get", "API_KEY", "--json")))["usage_count"] == 0
    assert json.loads(ok(cli("functions", "list", "--json"))) == []
    assert one_error(cli("functions", "logs", "reformat")) == "Error: function reformat does not exist"


# every deploy error: one line naming the file and the line -----------------------------------


def manifest_text(*middle: str) -> str:
    """Line 1 is `{`, line 2 the name, then `middle` from line 3 on, then `}`."""
    return "\n".join(["{", '  "name": "bad",', *middle, "}"]) + "\n"


TRIGGERS = ['  "triggers": [', '    {"type": "event", "event_name": "fine"},']
DEPLOY_ERRORS = [
    pytest.param(
        "def main(event):\n    x = (1,\n    return x\n",
        manifest_text('  "description": "x"'),
        "Error: bad.py:2: syntax error",
        id="syntax",
    ),
    pytest.param(
        "import os\n\ndef main(event):\n    return os.getcwd()\n",
        manifest_text('  "description": "x"'),
        "Error: bad.py:1: module 'os' is not available in Logic functions",
        id="policy",
    ),
    pytest.param(
        "def main(event):\n    return event._data\n",
        manifest_text('  "description": "x"'),
        'Error: bad.py:2: "_data" is an invalid attribute name',
        id="policy-underscore",
    ),
    pytest.param(
        "def handler(event):\n    return 1\n",
        manifest_text('  "description": "x"'),
        "Error: bad.py:1: entry point 'main' is not defined",
        id="missing-entry",
    ),
    pytest.param(
        "import json\ndef main(event, evnt):\n    return 1\n",
        manifest_text('  "description": "x"'),
        "Error: bad.py:2: parameter 'evnt' of main() is not a context part",
        id="unknown-parameter",
    ),
    pytest.param(
        "def main(secrets):\n    a = 1\n    return secrets.NOPE\n",
        manifest_text('  "secrets": ["API_KEY"]'),
        "Error: bad.py:3: secret 'NOPE' is not declared in the manifest (declared: API_KEY)",
        id="undeclared-literal",
    ),
    pytest.param(
        "def main(secrets):\n    return secrets['NOPE']\n",
        manifest_text('  "secrets": []'),
        "Error: bad.py:2: secret 'NOPE' is not declared in the manifest (declared: none)",
        id="undeclared-subscript",
    ),
    pytest.param(
        "def main(secrets):\n    return 1\n",
        manifest_text('  "description": "x",', '  "secrets": ["API_KEY", "MISSING"]'),
        "Error: bad.logic.json:4: secrets: secret MISSING does not exist",
        id="secret-not-in-scope",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text(
            *TRIGGERS[:1],
            *[f'    {{"type": "event", "event_name": "e{i}"}},' for i in range(5)],
            '    {"type": "event", "event_name": "e5"}',
            "  ]",
        ),
        "Error: bad.logic.json:3: at most 5 triggers, not 6",
        id="six-triggers",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text(*TRIGGERS, '    {"type": "schedule", "cron": "*/5 * *"}', "  ]"),
        "Error: bad.logic.json:5: triggers.1.cron: cron '*/5 * *' must have 4 or 5 fields",
        id="cron-fields",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text(*TRIGGERS, '    {"type": "schedule", "cron": "0 25 * * *"}', "  ]"),
        "Error: bad.logic.json:5: triggers.1.cron: cron '0 25 * * *' is not a valid cron expression",
        id="cron-invalid",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text(*TRIGGERS, '    {"type": "schedule", "cron": "0 0 30 2 *"}', "  ]"),
        "Error: bad.logic.json:5: triggers.1.cron: cron '0 0 30 2 *' never fires",
        id="cron-never",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text(*TRIGGERS, '    {"type": "event", "event_name": ""}', "  ]"),
        "Error: bad.logic.json:5: triggers.1.event_name: String should have at least 1 character",
        id="event-name-0",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text(*TRIGGERS, f'    {{"type": "event", "event_name": "{"e" * 65}"}}', "  ]"),
        "Error: bad.logic.json:5: triggers.1.event_name: event name must be 1-64 characters",
        id="event-name-65",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text('  "description": "x",'),
        "Error: bad.logic.json:4: invalid JSON: Expecting property name enclosed in double quotes",
        id="invalid-json",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        manifest_text('  "descripton": "x"'),
        "Error: bad.logic.json:3: descripton: Extra inputs are not permitted",
        id="unknown-key",
    ),
    pytest.param(
        "def main(event):\n    return 1\n",
        '{\n  "description": "no name"\n}\n',
        "Error: bad.logic.json:1: name: Field required",
        id="missing-name",
    ),
]


@pytest.mark.parametrize("source, manifest, message", DEPLOY_ERRORS)
def test_deploy_errors_name_file_and_line(ready, tmp_path, source, manifest, message):
    cli = ready
    directory = write_function(tmp_path / "bad", name="bad", source=source, manifest=manifest)
    line = one_error(cli("functions", "deploy", str(directory)))
    assert line.startswith(message), line
    assert VALUE not in line
    # The same checks guard a test run; nothing was deployed.
    assert one_error(cli("functions", "execute", str(directory))) == line
    assert json.loads(ok(cli("functions", "list", "--json"))) == []


def test_deploy_with_a_missing_source_file_or_no_manifest(ready, tmp_path):
    cli = ready
    directory = write_function(tmp_path / "nosource", name="bad", source=None)
    assert one_error(cli("functions", "deploy", str(directory))) == (
        f"Error: {directory / 'bad.py'}: the function's source file is missing"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_error(cli("functions", "deploy", str(empty))) == f"Error: {empty}: no *.logic.json file here"


# a real process -----------------------------------------------------------------------------


def run_logic(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env["LOGIC_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )


def test_subprocess_deploy_execute_logs(ready, logic_home, tmp_path):
    directory = write_function(tmp_path / "reformat")
    deployed = run_logic(logic_home, "functions", "deploy", str(directory), "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["version"] == 1
    executed = run_logic(
        logic_home,
        "functions",
        "execute",
        "reformat",
        "--event",
        "sensor-test",
        "--data",
        '{"i": 3, "fail": true}',
        "--json",
    )
    assert executed.returncode == 0, executed.stderr  # an error run still exits 0
    record = json.loads(executed.stdout)
    assert record["status"] == "error" and record["error"]["message"] == "refused reading 3"
    logs = run_logic(logic_home, "functions", "logs", "reformat", "--limit", "5", "--json")
    assert logs.returncode == 0 and json.loads(logs.stdout) == [record]
    for out in (deployed, executed, logs):
        assert VALUE not in out.stdout + out.stderr


def test_subprocess_deploy_error(ready, logic_home, tmp_path):
    directory = write_function(
        tmp_path / "bad",
        name="bad",
        source="def main(event):\n    return 1\n",
        manifest=manifest_text(*TRIGGERS, '    {"type": "event", "event_name": ""}', "  ]"),
    )
    refused = run_logic(logic_home, "functions", "deploy", str(directory))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "Error: bad.logic.json:5: triggers.1.event_name: String should have at least 1 character\n"
    )


def test_a_deploy_with_several_problems_prints_one_per_line(ready, tmp_path):
    cli = ready
    triggers = [{"type": "schedule", "cron": "not a cron"}, {"type": "event", "event_name": ""}]
    directory = write_function(tmp_path / "bad", name="bad", manifest={"name": "bad", "triggers": triggers})
    result = cli("functions", "deploy", str(directory))
    assert result.exit_code == 1 and result.stdout == ""
    first, *rest = result.stderr.strip().splitlines()
    assert first == f"Error: deploy refused ({len(rest)} problems):" and len(rest) >= 2
    assert all(line.startswith("  bad.logic.json") for line in rest), rest
    assert any("triggers.0.cron" in line for line in rest) and any("triggers.1.event_name" in line for line in rest)
