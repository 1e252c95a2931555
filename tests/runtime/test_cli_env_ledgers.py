"""`logic env ...` and `logic ledgers ...`: one `Error:` line and nothing changed on bad input."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def ready(cli):
    assert cli("init").exit_code == 0
    return cli


def test_env_commands(ready, db_rows):
    cli = ready
    assert cli("env", "set", "REGION", "eu").exit_code == 0
    assert cli("env", "set", "NOTE", input="from stdin\n").exit_code == 0
    assert cli("env", "get", "REGION").output == "eu\n"
    assert cli("env", "get", "NOTE").output == "from stdin\n"
    rows = json.loads(cli("env", "list", "--json").output)
    assert [r["name"] for r in rows] == ["NOTE", "REGION"]
    assert cli("env", "delete", "REGION").exit_code == 0
    failed = cli("env", "get", "REGION")
    assert failed.exit_code == 1 and "does not exist" in failed.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("env", "set", "LOGIC_HOME", "x"), "reserved"),
        (("env", "set", "PARTICLE_X", "x"), "reserved"),
        (("env", "set", "lower", "x"), "invalid environment variable name"),
        (("env", "set", "BIG", "x" * 16_385), "16384"),
        (("ledgers", "create", "Bad_Name"), "invalid ledger name"),
        (("ledgers", "set", "missing"), "does not exist"),
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(ready, db_rows, args, message):
    before = db_rows()
    result = ready(*args, input='{"a": 1}')
    assert result.exit_code == 1
    assert message in result.output and result.output.startswith("Error: ")
    assert db_rows() == before


def test_ledger_commands(ready, tmp_path):
    cli = ready
    assert cli("ledgers", "create", "counters", "--description", "counts").exit_code == 0
    assert cli("ledgers", "set", "counters", input='{"a": 1, "b": 1}').exit_code == 0
    data = tmp_path / "patch.json"
    data.write_text('{"b": 2}')
    assert cli("ledgers", "set", "counters", "--file", str(data), "--merge").exit_code == 0
    assert json.loads(cli("ledgers", "get", "counters").output) == {"a": 1, "b": 2}
    [version] = json.loads(cli("ledgers", "versions", "counters", "--json").output)
    assert version["size_bytes"] == len('{"a":1,"b":1}')
    assert cli("ledgers", "delete", "counters").exit_code == 0
    assert json.loads(cli("ledgers", "get", "counters", "--json").output)["data"] == {}
    assert [r["name"] for r in json.loads(cli("ledgers", "list", "--json").output)] == ["counters"]
    assert cli("ledgers", "archive", "counters").exit_code == 0
    assert cli("ledgers", "list").output.strip() == "No ledgers."


@pytest.mark.parametrize("data", ["[1, 2]", "not json", '{"a": "' + "x" * 16_400 + '"}'])
def test_bad_ledger_data_changes_nothing(ready, data):
    cli = ready
    cli("ledgers", "create", "l")
    cli("ledgers", "set", "l", input='{"keep": 1}')
    result = cli("ledgers", "set", "l", input=data)
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert json.loads(cli("ledgers", "get", "l").output) == {"keep": 1}
