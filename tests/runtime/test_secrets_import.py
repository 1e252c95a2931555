"""`logic secrets import`: .env (quotes, export, comments, multi-line values) and JSON, every
problem reported at once by line, all or nothing, names only in every output."""

from __future__ import annotations

import json

import pytest

from runtime.secrets_import import parse
from runtime.service import Service
from store.errors import InvalidInput, TooLarge
from store.secrets import ImportRefused
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


LIMITS = {"max_bytes": 512 * 1024, "max_count": 500}
MARK = "imp0rt-v4lue-"  # every value in this file starts with it, so a leak is easy to find


@pytest.fixture
def service(store):
    return Service(store)


def _values(service: Service, names) -> dict[str, str]:
    owner = service.actor().owner
    return {n: service.store.secrets.reveal(owner, n).reveal() for n in names}


DOTENV = (
    "# a comment line\n"
    "export EXPORTED=" + MARK + "exported\n"
    "PLAIN=" + MARK + "plain # an inline comment\n"
    "HASH_INSIDE=" + MARK + "a#b\n"
    'DOUBLE="' + MARK + 'with \\"escaped\\" quotes and \\n a newline escape"\n'
    "SINGLE='" + MARK + "single $HOME ${NOT_EXPANDED} # not a comment'\n"
    "  SPACED = " + MARK + "spaced  \n"
    "\n"
    'MULTI="' + MARK + '-----BEGIN KEY-----\nline two\n-----END KEY-----"\n'
    "AFTER=" + MARK + "after\n"
)
EXPECTED = {
    "EXPORTED": MARK + "exported",
    "PLAIN": MARK + "plain",
    "HASH_INSIDE": MARK + "a#b",
    "DOUBLE": MARK + 'with "escaped" quotes and \n a newline escape',
    "SINGLE": MARK + "single $HOME ${NOT_EXPANDED} # not a comment",
    "SPACED": MARK + "spaced",
    "MULTI": MARK + "-----BEGIN KEY-----\nline two\n-----END KEY-----",
    "AFTER": MARK + "after",
}


def test_dotenv_quoting_export_comments_and_multiline_values(service):
    result = service.import_secrets(service.actor(), DOTENV)
    assert result.created == list(EXPECTED) and result.updated == []
    assert _values(service, EXPECTED) == EXPECTED


def test_line_numbers_count_blank_lines_and_multiline_values():
    text = '\n\nA_KEY=1\n\nB_KEY="x\ny\nz"\n\n\nbad\nC_KEY=3\n'
    parsed = parse(text, **LIMITS)
    assert [(e.where, e.name) for e in parsed.entries] == [
        ("line 3", "A_KEY"),
        ("line 5", "B_KEY"),
        ("line 11", "C_KEY"),
    ]
    assert parsed.problems == ["line 10: no = after the name (write NAME=value)"]


def test_crlf_and_a_byte_order_mark_are_read_as_text(service):
    text = "\ufeffA_KEY=" + MARK + 'a\r\nB_KEY="' + MARK + 'b"\r\n'
    service.import_secrets(service.actor(), text.encode("utf-8"))
    assert _values(service, ["A_KEY", "B_KEY"]) == {"A_KEY": MARK + "a", "B_KEY": MARK + "b"}


def test_one_bad_line_among_fifty_good_ones_writes_nothing(service, db_rows):
    lines = [f"GOOD_{i:02d}={MARK}{i}" for i in range(50)]
    lines.insert(26, "9_STARTS_WITH_A_DIGIT=" + MARK + "bad")  # line 27
    before = db_rows()
    with pytest.raises(ImportRefused) as refused:
        service.import_secrets(service.actor(), "\n".join(lines) + "\n")
    assert refused.value.issues == [
        "line 27: invalid secret name: use upper-case letters, digits and _, not starting with a digit (e.g. API_KEY)"
    ]
    assert "nothing was imported (1 problem)" in refused.value.message
    assert MARK not in refused.value.message and "9_STARTS" not in refused.value.message
    assert db_rows() == before


def test_every_problem_is_reported_at_once_in_the_files_order(service, db_rows):
    service.create_secret(service.actor(), "EXISTS", MARK + "old")
    text = "\n".join(
        [
            "OK_ONE=" + MARK + "1",  # 1
            "lower=" + MARK + "2",  # 2
            "EMPTY=",  # 3
            "EXISTS=" + MARK + "3",  # 4
            "NO_EQUALS_SIGN",  # 5
            "OK_ONE=" + MARK + "again",  # 6
            "X" * 65 + "=" + MARK + "4",  # 7
            "HUGE=" + MARK + "x" * 70_000,  # 8
            'OPEN="' + MARK + "never closed",  # 9
        ]
    )
    before = db_rows()
    with pytest.raises(ImportRefused) as refused:
        service.import_secrets(service.actor(), text)
    issues = refused.value.issues
    assert [i.split(":")[0] for i in issues] == [f"line {n}" for n in (2, 3, 4, 5, 6, 7, 8, 9)]
    assert "line 3: EMPTY: secret value must not be empty" in issues
    assert "line 4: secret EXISTS already exists (import with --update to replace it)" in issues
    assert "line 6: OK_ONE is given twice (first at line 1)" in issues
    assert "line 7: secret name must be at most 64 characters, not 65" in issues
    assert any(i.startswith("line 8: HUGE: secret value is 70013 bytes; the limit is 65536") for i in issues)
    assert "line 9: cannot be read as NAME=value (is a quote left open?)" in issues
    assert MARK not in refused.value.message and "never closed" not in refused.value.message
    assert db_rows() == before


def test_an_open_quote_never_puts_a_piece_of_the_value_in_an_error(service):
    # The value's later lines are read as lines of their own: none of them may be echoed.
    text = 'CERT="' + MARK + "first\nSECOND_LINE_OF_VALUE\nthird part of value\n"
    with pytest.raises(ImportRefused) as refused:
        service.import_secrets(service.actor(), text)
    message = refused.value.message
    for piece in (MARK, "first", "SECOND_LINE_OF_VALUE", "third", "part of value"):
        assert piece not in message, piece


def test_update_replaces_existing_values_and_keeps_the_old_ones_as_versions(service):
    actor = service.actor()
    service.create_secret(actor, "API_KEY", MARK + "old")
    result = service.import_secrets(actor, "API_KEY=" + MARK + "new\nNEW_ONE=" + MARK + "n\n", update=True)
    assert (result.created, result.updated) == (["NEW_ONE"], ["API_KEY"])
    assert _values(service, ["API_KEY"]) == {"API_KEY": MARK + "new"}
    versions = service.secret_versions(actor, "API_KEY")
    assert [(v.number, v.current) for v in versions] == [(2, True), (1, False)]
    assert versions[0].created_by == f"{actor.name} (cli)"
    service.restore_secret(actor, "API_KEY", 1)
    assert _values(service, ["API_KEY"]) == {"API_KEY": MARK + "old"}


def test_json_objects(service, db_rows):
    actor = service.actor()
    result = service.import_secrets(actor, json.dumps({"J_ONE": MARK + "1", "J_TWO": MARK + "2\nline"}))
    assert result.created == ["J_ONE", "J_TWO"]
    assert _values(service, ["J_TWO"]) == {"J_TWO": MARK + "2\nline"}
    before = db_rows()
    bad = (
        '{"A_KEY": 5, "B_KEY": null, "C_KEY": {"x": 1}, "D_KEY": [1], "E_KEY": true, '
        '"bad": "v", "F_KEY": "v", "F_KEY": "w"}'
    )
    with pytest.raises(ImportRefused) as refused:
        service.import_secrets(actor, bad, format="json")
    assert refused.value.issues == [
        "entry 1: the value must be a JSON string, not a number",
        "entry 2: the value must be a JSON string, not null",
        "entry 3: the value must be a JSON string, not an object",
        "entry 4: the value must be a JSON string, not an array",
        "entry 5: the value must be a JSON string, not true/false",
        "entry 6: invalid secret name: use upper-case letters, digits and _, not starting with a digit (e.g. API_KEY)",
        "entry 8: F_KEY is given twice (first at entry 7)",
    ]
    assert db_rows() == before


@pytest.mark.parametrize(
    "content, fmt, error, words",
    [
        (b"", "auto", InvalidInput, "the import is empty"),
        (b"  \n\n \t\n", "auto", InvalidInput, "the import is empty"),
        (b"# only a comment\n", "auto", InvalidInput, "nothing to import: no NAME=value entries"),
        (b"A_KEY=ok\nB_KEY=\xff\xfe\n", "auto", InvalidInput, r"not UTF-8 text \(line 2"),
        (b'{"A_KEY": "v",}', "auto", InvalidInput, r"not valid JSON: .*\(line 1, column"),
        (b'["A_KEY"]', "auto", InvalidInput, "one object of"),
        (b'"A_KEY"', "json", InvalidInput, "one object of"),
        (b"{}", "json", InvalidInput, "nothing to import"),
        (b"A_KEY=v", "yaml", InvalidInput, "unknown import format"),
        (b"[" * 100_000 + b"]" * 100_000, "json", InvalidInput, "JSON"),
    ],
)
def test_bad_inputs_get_a_clear_error_and_change_nothing(service, db_rows, content, fmt, error, words):
    before = db_rows()
    with pytest.raises(error, match=words):
        service.import_secrets(service.actor(), content, format=fmt)
    assert db_rows() == before


def test_size_and_count_limits_are_settings(service, db_rows):
    settings = service.settings
    before = db_rows()
    too_big = b"A_KEY=" + b"x" * settings.secret_import_max_bytes
    with pytest.raises(TooLarge, match=f"the limit is {settings.secret_import_max_bytes} bytes"):
        service.import_secrets(service.actor(), too_big)
    many = "".join(f"K_{i}=v\n" for i in range(settings.secret_import_max_count + 1))
    with pytest.raises(TooLarge, match=f"{settings.secret_import_max_count + 1} entries; at most"):
        service.import_secrets(service.actor(), many)
    assert db_rows() == before
    exactly = "".join(f"K_{i}={MARK}\n" for i in range(settings.secret_import_max_count))
    assert len(service.import_secrets(service.actor(), exactly).created) == settings.secret_import_max_count


def test_an_org_import_needs_membership(service, store):
    admin = service.actor()
    service.create_org(admin, "acme")
    outsider = store.identity.create_user("mallory")
    from store.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        service.import_secrets(outsider, "A_KEY=" + MARK, org="acme")
    assert service.import_secrets(admin, "A_KEY=" + MARK, org="acme").created == ["A_KEY"]
    assert [s.name for s in service.list_secrets(admin, "acme")] == ["A_KEY"]
    assert service.list_secrets(admin) == []


# the CLI -------------------------------------------------------------------------


def test_cli_imports_a_file_stdin_json_and_update(cli, tmp_path):
    assert cli("init").exit_code == 0
    env_file = tmp_path / "prod.env"
    env_file.write_text(DOTENV)
    done = cli("secrets", "import", str(env_file))
    assert done.exit_code == 0, done.output
    assert done.stdout == f"Created {len(EXPECTED)}: {', '.join(EXPECTED)}\n"
    piped = cli("secrets", "import", "-", "--json", input="FROM_STDIN=" + MARK + "stdin\n")
    assert piped.exit_code == 0 and json.loads(piped.stdout) == {"created": ["FROM_STDIN"], "updated": []}
    json_file = tmp_path / "values.txt"  # not by its suffix: its first character says JSON
    json_file.write_text(json.dumps({"FROM_STDIN": MARK + "replaced", "J_NEW": MARK + "j"}))
    refused = cli("secrets", "import", str(json_file))
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: nothing was imported (1 problem):\n"
        "  entry 1: secret FROM_STDIN already exists (import with --update to replace it)\n"
    )
    updated = cli("secrets", "import", str(json_file), "--update")
    assert updated.exit_code == 0 and updated.stdout == "Created 1: J_NEW\nUpdated 1: FROM_STDIN\n"
    listing = json.loads(cli("secrets", "list", "--json").stdout)
    assert len(listing) == len(EXPECTED) + 2
    for result in (done, piped, refused, updated):
        assert MARK not in result.output
    versions = cli("secrets", "versions", "FROM_STDIN", "--json")
    assert [v["version"] for v in json.loads(versions.stdout)] == [2, 1]


def test_cli_import_errors(cli, tmp_path):
    assert cli("init").exit_code == 0
    missing = cli("secrets", "import", str(tmp_path / "nope.env"))
    assert missing.exit_code == 1 and "cannot read" in missing.stderr and "No such file" in missing.stderr
    json_suffix = tmp_path / "x.json"
    json_suffix.write_text("A_KEY=" + MARK)  # .json by name: read as JSON, so refused clearly
    wrong = cli("secrets", "import", str(json_suffix))
    assert wrong.exit_code == 1 and "not valid JSON" in wrong.stderr and MARK not in wrong.output
    forced = cli("secrets", "import", str(json_suffix), "--format", "dotenv")
    assert forced.exit_code == 0 and forced.stdout == "Created 1: A_KEY\n"
    assert cli("secrets", "import", str(json_suffix), "--format", "toml").exit_code == 2
    big = tmp_path / "big.env"
    big.write_bytes(b"A_KEY=" + b"x" * (600 * 1024))
    too_big = cli("secrets", "import", str(big))
    assert too_big.exit_code == 1 and "the limit is 524288 bytes" in too_big.stderr
    assert cli("secrets", "import", "-", input="").stderr == "Error: the import is empty: nothing to import\n"
    assert [r["name"] for r in json.loads(cli("secrets", "list", "--json").stdout)] == ["A_KEY"]


def test_cli_versions_and_restore(cli):
    assert cli("init").exit_code == 0
    assert cli("secrets", "create", "API_KEY", input=MARK + "one").exit_code == 0
    assert cli("secrets", "update", "API_KEY", input=MARK + "two").exit_code == 0
    table = cli("secrets", "versions", "API_KEY")
    assert table.exit_code == 0 and "(cli)" in table.stdout and "yes" in table.stdout
    restored = cli("secrets", "restore", "API_KEY", "--version", "1")
    assert restored.stdout == "Restored secret API_KEY: version 1 is current again, as version 3.\n"
    as_json = cli("secrets", "restore", "API_KEY", "--version", "2", "--json")
    data = json.loads(as_json.stdout)
    assert (data["version"], data["restored_from"], data["name"]) == (4, 2, "API_KEY") and "value" not in data
    for args, code, words in (
        (["--version", "4"], 1, "already the current value"),
        (["--version", "9"], 1, "has no version 9"),
        (["--version", "0"], 1, "whole number from 1"),
        (["--version", "two"], 2, "is not a valid integer"),
        ([], 2, "Missing option '--version'"),
    ):
        refused = cli("secrets", "restore", "API_KEY", *args)
        assert refused.exit_code == code and words in refused.stderr, args
    assert cli("secrets", "versions", "MISSING").stderr == "Error: secret MISSING does not exist\n"
    listing = json.loads(cli("secrets", "versions", "API_KEY", "--json").stdout)
    assert [(v["version"], v["current"], v["restored_from"]) for v in listing] == [
        (4, True, 2),
        (3, False, 1),
        (2, False, None),
        (1, False, None),
    ]
    every = [cli("secrets", "versions", "API_KEY").output, json.dumps(listing), restored.output, as_json.output]
    assert all(MARK not in text for text in every)
