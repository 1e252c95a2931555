"""`logic` command line: every secrets/identity/keys command, every bad input.

A refused command must print one `Error: ...` line on stderr, exit 1 (2 for
usage errors) and change nothing: each bad-input test compares every table
row and `secrets list --json` before and after.
"""

from __future__ import annotations

import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import click
import pytest

from store import Settings, Store, masterkey
from store.clock import parse_iso
from store.migrations import MIGRATIONS
from store.secrets import Access

VALUE = "cli-test-value-Qx7!"
SECRET_KEYS = ["name", "created_at", "updated_at", "last_accessed_at", "usage_count", "logic_functions", "integrations"]


@pytest.fixture
def ready(cli, settings):
    """`logic init` done, with one secret API_KEY and users bob (no admin) and org acme of the admin.

    Built through the library (faster); the same commands are tested through the CLI below.
    """
    store, result = Store.initialize(settings)
    try:
        store.secrets.create(result.admin.owner, "API_KEY", VALUE)
        store.identity.create_user("bob")
        store.identity.create_org("acme", result.admin)
    finally:
        store.close()
    return cli


def _open(home: Path) -> Store:
    return Store.open(Settings(home=home))


def _reveal(home: Path, owner: str, name: str) -> str:
    store = _open(home)
    try:
        return store.secrets.reveal(owner, name).reveal()
    finally:
        store.close()


def _admin_owner(home: Path) -> str:
    store = _open(home)
    try:
        return store.identity.first_admin().owner
    finally:
        store.close()


def _raw_rows(home: Path) -> dict:
    """Every row of every table, read without the store (works with a wrong or missing key)."""
    conn = sqlite3.connect(home / "logic.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
        rows["user_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
        return rows
    finally:
        conn.close()


def _state(cli) -> tuple:
    """What a refused command must leave alone: the listing, every row, the key files."""
    listing = cli("secrets", "list", "--json")
    assert listing.exit_code == 0
    files = sorted((p.name, p.read_bytes()) for p in cli.home.iterdir() if not p.name.startswith("logic.db"))
    return listing.stdout, _raw_rows(cli.home), files


def _refused(result, message: str, code: int = 1) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.stderr
    assert VALUE not in result.stderr


# init ----------------------------------------------------------------------------


def test_init_then_again(cli, logic_home):
    first = cli("init")
    assert first.exit_code == 0
    token = next(line.split()[-1] for line in first.stdout.splitlines() if "API token:" in line)
    assert token.startswith("lgc_")
    assert "shown only this once" in first.stdout
    key = (logic_home / "master.key").read_bytes()
    rows = _raw_rows(logic_home)
    second = cli("init")
    assert second.exit_code == 0
    assert "Already initialized" in second.stdout
    assert token not in second.stdout and "lgc_" not in second.stdout
    assert (logic_home / "master.key").read_bytes() == key
    assert _raw_rows(logic_home) == rows
    store = _open(logic_home)
    assert store.identity.authenticate(token).is_admin
    store.close()


def test_init_json(cli, logic_home):
    data = json.loads(cli("init", "--json").stdout)
    assert set(data) == {"created", "home", "database", "master_key", "admin", "token"}
    assert data["created"] is True and data["token"].startswith("lgc_")
    assert data["home"] == str(logic_home)
    assert data["master_key"] == str(logic_home / "master.key")
    again = json.loads(cli("init", "--json").stdout)
    assert again["created"] is False and again["token"] is None and again["admin"] == data["admin"]
    assert (
        logic_home.stat().st_mode & 0o777,
        (logic_home / "master.key").stat().st_mode & 0o777,
        (logic_home / "logic.db").stat().st_mode & 0o777,
    ) == (0o700, 0o600, 0o600)


def test_commands_before_init(cli, logic_home):
    result = cli("secrets", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no database at ")
    assert "run `logic init` first" in result.stderr
    assert not (logic_home / "logic.db").exists()


# secrets -------------------------------------------------------------------------


def _check_secret_json(data: dict, name: str) -> None:
    assert list(data) == SECRET_KEYS
    assert data["name"] == name
    for key in ("created_at", "updated_at"):
        assert parse_iso(data[key]).tzinfo == UTC and data[key].endswith("Z")
    assert isinstance(data["usage_count"], int)
    assert isinstance(data["logic_functions"], list) and isinstance(data["integrations"], list)


def test_secrets_list_get_json_shapes(ready):
    rows = json.loads(ready("secrets", "list", "--json").stdout)
    assert len(rows) == 1
    _check_secret_json(rows[0], "API_KEY")
    assert rows[0]["last_accessed_at"] is None and rows[0]["usage_count"] == 0
    detail = json.loads(ready("secrets", "get", "API_KEY", "--json").stdout)
    assert detail == rows[0]


def test_secrets_list_names_prints_one_name_per_line_and_nothing_else(ready, settings):
    store = _open(settings.home)
    try:
        store.secrets.create(_admin_owner(settings.home), "B_KEY", VALUE + "b")
    finally:
        store.close()
    names = ready("secrets", "list", "--names")
    assert names.exit_code == 0 and names.stdout == "API_KEY\nB_KEY\n"
    empty = ready("secrets", "list", "--names", "--org", "acme")
    assert empty.exit_code == 0 and empty.stdout == ""


def test_secrets_human_output(ready):
    listing = ready("secrets", "list")
    assert listing.exit_code == 0 and "API_KEY" in listing.stdout and VALUE not in listing.stdout
    detail = ready("secrets", "get", "API_KEY")
    assert detail.exit_code == 0
    assert "name:" in detail.stdout and "API_KEY" in detail.stdout and "never" in detail.stdout
    empty = ready("secrets", "list", "--org", "acme")
    assert empty.exit_code == 0 and "No secrets." in empty.stdout


def test_create_reads_stdin_and_strips_one_newline(ready):
    owner = _admin_owner(ready.home)
    assert _reveal(ready.home, owner, "API_KEY") == VALUE
    created = ready("secrets", "create", "TWO_LINES", "--json", input="abc\n\n")
    assert created.exit_code == 0
    _check_secret_json(json.loads(created.stdout), "TWO_LINES")
    assert _reveal(ready.home, owner, "TWO_LINES") == "abc\n"
    assert ready("secrets", "create", "CRLF", input="crlf-value\r\n").exit_code == 0
    assert _reveal(ready.home, owner, "CRLF") == "crlf-value"
    human = ready("secrets", "create", "NO_NEWLINE", input="  spaced  ")
    assert human.stdout == "Created secret NO_NEWLINE.\n"
    assert _reveal(ready.home, owner, "NO_NEWLINE") == "  spaced  "


def test_create_and_update_from_a_value_file(ready, tmp_path):
    owner = _admin_owner(ready.home)
    path = tmp_path / "value.txt"
    path.write_text("from-a-file\n")
    assert ready("secrets", "create", "FROM_FILE", "--value-file", str(path)).exit_code == 0
    assert _reveal(ready.home, owner, "FROM_FILE") == "from-a-file"
    path.write_bytes("updated-\u00e9".encode())
    updated = ready("secrets", "update", "FROM_FILE", "--value-file", str(path), "--json")
    assert updated.exit_code == 0
    _check_secret_json(json.loads(updated.stdout), "FROM_FILE")
    assert _reveal(ready.home, owner, "FROM_FILE") == "updated-\u00e9"


def test_update_and_delete(ready):
    owner = _admin_owner(ready.home)
    before = json.loads(ready("secrets", "get", "API_KEY", "--json").stdout)
    updated = ready("secrets", "update", "API_KEY", input="replaced-value\n")
    assert updated.exit_code == 0 and updated.stdout == "Updated secret API_KEY.\n"
    after = json.loads(ready("secrets", "get", "API_KEY", "--json").stdout)
    assert after["created_at"] == before["created_at"] and after["updated_at"] >= before["updated_at"]
    assert _reveal(ready.home, owner, "API_KEY") == "replaced-value"
    deleted = ready("secrets", "delete", "API_KEY", "--json")
    assert deleted.exit_code == 0 and json.loads(deleted.stdout) == {"deleted": "API_KEY"}
    assert json.loads(ready("secrets", "list", "--json").stdout) == []
    assert ready("secrets", "create", "GONE", input="x").exit_code == 0
    assert ready("secrets", "delete", "GONE").stdout == "Deleted secret GONE.\n"


def test_org_secrets(ready):
    assert ready("orgs", "add-member", "acme", "bob").exit_code == 0
    created = ready("--as", "bob", "secrets", "create", "ORG_KEY", "--org", "acme", "--json", input="org-v\n")
    assert created.exit_code == 0
    _check_secret_json(json.loads(created.stdout), "ORG_KEY")
    assert _reveal(ready.home, "org:acme", "ORG_KEY") == "org-v"
    names = [r["name"] for r in json.loads(ready("secrets", "list", "--org", "acme", "--json").stdout)]
    assert names == ["ORG_KEY"]
    assert ready("secrets", "get", "ORG_KEY", "--org", "acme", "--json").exit_code == 0
    assert ready("secrets", "update", "ORG_KEY", "--org", "acme", input="org-v2").exit_code == 0
    assert _reveal(ready.home, "org:acme", "ORG_KEY") == "org-v2"
    assert [r["name"] for r in json.loads(ready("secrets", "list", "--json").stdout)] == ["API_KEY"]
    assert ready("--as", "bob", "secrets", "delete", "ORG_KEY", "--org", "acme").exit_code == 0
    assert json.loads(ready("secrets", "list", "--org", "acme", "--json").stdout) == []


def test_usage_is_shown_and_blocks_delete(ready):
    store = _open(ready.home)
    owner = store.identity.first_admin().owner
    store.secrets.set_usages(owner, "logic_function", "fn-1", "reformat", ["API_KEY"])
    store.secrets.set_usages(owner, "integration", "int-1", "notify", ["API_KEY"])
    store.close()
    data = json.loads(ready("secrets", "get", "API_KEY", "--json").stdout)
    assert (data["usage_count"], data["logic_functions"], data["integrations"]) == (2, ["reformat"], ["notify"])
    assert "reformat" in ready("secrets", "list").stdout
    before = _state(ready)
    _refused(
        ready("secrets", "delete", "API_KEY"),
        "secret API_KEY is in use by function reformat, integration notify: remove it from them first",
    )
    assert _state(ready) == before


# bad input: a clear error and nothing changed ------------------------------------

BIG = 64 * 1024


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["secrets", "create", "1ABC"], VALUE, "invalid secret name '1ABC'"),
        (["secrets", "create", "abc"], VALUE, "invalid secret name 'abc'"),
        (["secrets", "create", "A-B"], VALUE, "invalid secret name 'A-B'"),
        (["secrets", "create", ""], VALUE, "secret name must not be empty"),
        (["secrets", "create", "A" * 65], VALUE, "secret name must be at most 64 characters, not 65"),
        (["secrets", "create", "API_KEY"], "another", "secret API_KEY already exists"),
        (["secrets", "create", "NEW"], "", "secret value must not be empty"),
        (["secrets", "create", "NEW"], "\n", "secret value must not be empty"),
        (["secrets", "create", "NEW"], "x" * (BIG + 1), f"secret value is {BIG + 1} bytes; the limit is {BIG} bytes"),
        (["secrets", "create", "NEW"], b"\xff\xfe\xfd", "secret value is not valid UTF-8 text"),
        (["secrets", "update", "API_KEY"], "", "secret value must not be empty"),
        (["secrets", "update", "API_KEY"], "y" * (BIG + 1), f"secret value is {BIG + 1} bytes"),
        (["secrets", "update", "API_KEY"], b"ok\xc3", "secret value is not valid UTF-8 text"),
        (["secrets", "update", "NOPE"], VALUE, "secret NOPE does not exist"),
        (["secrets", "get", "NOPE"], None, "secret NOPE does not exist"),
        (["secrets", "delete", "NOPE"], None, "secret NOPE does not exist"),
        (["secrets", "list", "--org", "nope"], None, "organization nope does not exist"),
        (["secrets", "create", "NEW", "--org", "nope"], VALUE, "organization nope does not exist"),
        (["--as", "bob", "secrets", "list", "--org", "acme"], None, "user bob is not a member of organization acme"),
        (
            ["--as", "bob", "secrets", "create", "NEW", "--org", "acme"],
            VALUE,
            "user bob is not a member of organization acme",
        ),
        (
            ["--as", "bob", "secrets", "get", "API_KEY", "--org", "acme"],
            None,
            "user bob is not a member of organization acme",
        ),
        (["--as", "bob", "orgs", "add-member", "acme", "bob"], None, "user bob is not a member of organization acme"),
        (["--as", "bob", "users", "create", "carol"], None, "only an admin can create users"),
        (["--as", "bob", "keys", "rotate"], None, "only an admin can rotate keys"),
        (["--as", "bob", "keys", "rotate", "--master"], None, "only an admin can rotate keys"),
        (["--as", "ghost", "secrets", "list"], None, "user ghost does not exist"),
        (["users", "create", "bob"], None, "user bob already exists"),
        (["users", "create", "Bad Name"], None, "invalid user name 'Bad Name'"),
        (["orgs", "create", "acme"], None, "organization acme already exists"),
        (["orgs", "add-member", "acme", "ghost"], None, "user ghost does not exist"),
        (["orgs", "add-member", "nope", "bob"], None, "organization nope does not exist"),
        (["audit", "--secret", "NOPE"], None, "secret NOPE does not exist"),
        (["--as", "bob", "tokens", "create", "--user", "root"], None, "only an admin can manage another user's tokens"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_input_is_refused_and_changes_nothing(ready, args, stdin, message):
    before = _state(ready)
    _refused(ready(*args, input=stdin), message)
    assert _state(ready) == before


def test_exactly_64_kib_is_accepted(ready):
    assert ready("secrets", "create", "BIG", input="x" * BIG + "\n").exit_code == 0
    assert len(_reveal(ready.home, _admin_owner(ready.home), "BIG")) == BIG


def test_unreadable_value_file(ready, tmp_path):
    before = _state(ready)
    result = ready("secrets", "create", "NEW", "--value-file", str(tmp_path / "missing.txt"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot read {tmp_path / 'missing.txt'}")
    assert _state(ready) == before


@pytest.mark.parametrize(
    "args",
    [
        ["secrets", "create"],
        ["secrets", "update"],
        ["secrets", "get"],
        ["secrets", "delete"],
        ["secrets", "create", "X", "--value", "abc"],
        ["secrets", "update", "API_KEY", "--value=abc"],
        ["secrets", "create", "X", "abc"],
        ["secrets", "nope"],
        ["nope"],
        ["orgs", "add-member", "acme"],
        ["users", "create"],
        ["audit", "--limit", "0"],
    ],
)
def test_usage_errors_exit_2(ready, args):
    before = _state(ready)
    result = ready(*args, input="abc\n")
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr or "Error:" in result.stderr
    assert _state(ready) == before


def test_no_option_anywhere_takes_a_secret_value():
    """Values come from stdin, a hidden prompt or a file: never argv (shell history, `ps`)."""
    from runtime.cli import cli as root

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, command in walk(root, ["logic"]):
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts + param.secondary_opts:
                    assert opt in ("--value-file",) or "value" not in opt.lower(), (path, opt)
    create = root.commands["secrets"].commands["create"]
    assert [p.name for p in create.params if isinstance(p, click.Argument)] == ["name"]


# wrong key, missing key, newer schema, tampered rows ------------------------------

EVERY_COMMAND = [
    (["init"], None),
    (["secrets", "list"], None),
    (["secrets", "list", "--json"], None),
    (["secrets", "get", "API_KEY"], None),
    (["secrets", "get", "API_KEY", "--json"], None),
    (["secrets", "create", "NEW"], VALUE),
    (["secrets", "update", "API_KEY"], VALUE),
    (["secrets", "delete", "API_KEY"], None),
    (["secrets", "list", "--org", "acme"], None),
    (["audit"], None),
    (["audit", "--secret", "API_KEY", "--json"], None),
    (["users", "create", "carol"], None),
    (["orgs", "create", "other"], None),
    (["orgs", "add-member", "acme", "bob"], None),
    (["tokens", "create"], None),
    (["keys", "rotate"], None),
    (["keys", "rotate", "--master"], None),
]


def _every_command_refused(cli, message_start: str, env: dict | None = None) -> None:
    rows = _raw_rows(cli.home)
    files = sorted((p.name, p.read_bytes()) for p in cli.home.iterdir() if not p.name.startswith("logic.db"))
    for args, stdin in EVERY_COMMAND:
        result = cli(*args, input=stdin, env=env)
        assert result.exit_code == 1, (args, result.output)
        assert result.stdout == "", args
        assert result.stderr.startswith(f"Error: {message_start}"), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert VALUE not in result.stderr
    assert _raw_rows(cli.home) == rows
    assert sorted((p.name, p.read_bytes()) for p in cli.home.iterdir() if not p.name.startswith("logic.db")) == files


def test_wrong_master_key_file(ready):
    masterkey.write_key_file(ready.home / "master.key", masterkey.generate())
    _every_command_refused(ready, "the master key does not match this database")


def test_missing_master_key(ready):
    (ready.home / "master.key").unlink()
    _every_command_refused(ready, f"no master key: set LOGIC_MASTER_KEY or create {ready.home / 'master.key'}")


@pytest.mark.parametrize(
    "env_key, message",
    [
        (masterkey.encode(b"w" * 32), "the master key does not match this database"),
        ("!!!not base64!!!", "the master key in LOGIC_MASTER_KEY is not valid base64"),
        (masterkey.encode(b"k" * 31), "the master key in LOGIC_MASTER_KEY must be 32 bytes, not 31"),
    ],
    ids=["wrong", "not-base64", "31-bytes"],
)
def test_bad_env_master_key(ready, env_key, message):
    _every_command_refused(ready, message, env={"LOGIC_MASTER_KEY": env_key})


def test_newer_schema(ready):
    conn = sqlite3.connect(ready.home / "logic.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    _every_command_refused(
        ready,
        f"the database at {ready.home / 'logic.db'} has schema version 999, newer "
        f"than this logic-runtime supports ({len(MIGRATIONS)})",
    )


def test_tampered_ciphertext_is_named_never_decrypted(ready):
    conn = sqlite3.connect(ready.home / "logic.db")
    blob = bytearray(conn.execute("SELECT ciphertext FROM secrets WHERE name = 'API_KEY'").fetchone()[0])
    blob[-1] ^= 1
    conn.execute("UPDATE secrets SET ciphertext = ? WHERE name = 'API_KEY'", (bytes(blob),))
    conn.commit()
    conn.close()
    before = _state(ready)
    owner = _admin_owner(ready.home)
    _refused(
        ready("keys", "rotate"),
        f"secret API_KEY of {owner} cannot be decrypted: the stored value was altered or belongs to another secret",
    )
    assert _state(ready) == before
    assert ready("secrets", "get", "API_KEY").exit_code == 0  # metadata still readable


def test_ciphertext_copied_to_another_owner(ready):
    assert ready("orgs", "add-member", "acme", "bob").exit_code == 0
    assert ready("secrets", "create", "API_KEY", "--org", "acme", input="org-value").exit_code == 0
    conn = sqlite3.connect(ready.home / "logic.db")
    conn.execute(
        "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE owner LIKE 'user:%') "
        "WHERE owner = 'org:acme'"
    )
    conn.commit()
    conn.close()
    before = _state(ready)
    result = ready("keys", "rotate")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: secret API_KEY of org:acme cannot be decrypted")
    assert _state(ready) == before


# users, orgs, tokens, keys, audit ------------------------------------------------


def test_users_orgs_tokens(ready):
    made = ready("users", "create", "carol", "--json")
    assert json.loads(made.stdout) == {"name": "carol", "admin": False}
    assert ready("users", "create", "dave", "--admin").stdout == "Created user dave.\n"
    assert ready("--as", "dave", "users", "create", "erin").exit_code == 0
    assert json.loads(ready("orgs", "create", "beta", "--json").stdout) == {"org": "beta"}
    assert json.loads(ready("orgs", "add-member", "beta", "carol", "--json").stdout) == {"org": "beta", "user": "carol"}
    assert ready("orgs", "add-member", "acme", "carol").stdout == "Added carol to acme.\n"
    token_json = json.loads(ready("--as", "carol", "tokens", "create", "--json").stdout)
    human = ready("tokens", "create", "--user", "carol", "--label", "ci")
    human_token = human.stdout.split()[0]
    store = _open(ready.home)
    try:
        assert store.identity.authenticate(token_json["token"]).name == "carol"
        assert store.identity.authenticate(human_token).name == "carol"
        hashes = [r[0] for r in store.db.all("SELECT token_hash FROM tokens")]
        assert all(t not in hashes for t in (token_json["token"], human_token))
        assert sorted(store.identity.members("beta")) == sorted(["carol", store.identity.first_admin().name])
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in ready.home.glob("logic.db*"))
    assert token_json["token"].encode() not in raw and human_token.encode() not in raw


def test_tokens_list_and_revoke(ready):
    from store.errors import Unauthorized

    token = json.loads(ready("tokens", "create", "--label", "laptop", "--json").stdout)["token"]
    listed = json.loads(ready("tokens", "list", "--json").stdout)
    assert [t["label"] for t in listed] == ["created by logic init", "laptop"]
    assert token not in ready("tokens", "list").stdout and "token_hash" not in json.dumps(listed)
    laptop = listed[1]["id"]
    assert ready("--as", "bob", "tokens", "revoke", str(laptop)).exit_code == 1  # not bob's token
    assert ready("--as", "bob", "tokens", "list", "--user", _open_admin_name(ready)).exit_code == 1  # admin only
    assert ready("tokens", "revoke", str(laptop)).stdout == f"Revoked token {laptop}.\n"
    store = _open(ready.home)
    try:
        with pytest.raises(Unauthorized):
            store.identity.authenticate(token)
    finally:
        store.close()
    again = ready("tokens", "revoke", str(laptop))
    assert again.exit_code == 1 and "does not exist" in again.stderr


def _open_admin_name(ready) -> str:
    store = _open(ready.home)
    try:
        return store.identity.first_admin().name
    finally:
        store.close()


def test_keys_rotate(ready):
    owner = _admin_owner(ready.home)
    result = json.loads(ready("keys", "rotate", "--json").stdout)
    assert result["secrets_reencrypted"] == 1
    conn = sqlite3.connect(ready.home / "logic.db")
    assert [r[0] for r in conn.execute("SELECT id FROM keyring")] == [result["data_key_id"]]
    conn.close()
    human = ready("keys", "rotate")
    assert "now encrypts 1 secret(s)" in human.stdout
    old_key = (ready.home / "master.key").read_bytes()
    master = ready("keys", "rotate", "--master", "--json")
    assert json.loads(master.stdout) == {"master_key": str(ready.home / "master.key")}
    assert (ready.home / "master.key").read_bytes() != old_key
    assert "New master key written to" in ready("keys", "rotate", "--master").stdout
    assert _reveal(ready.home, owner, "API_KEY") == VALUE


def test_keys_rotate_master_to_the_next_key_given_beforehand(ready):
    """LOGIC_MASTER_KEY_NEXT set (every node of a cluster got it first): the ring is re-wrapped
    under it, no key file is written, and the message says what to do on every node."""
    owner = _admin_owner(ready.home)
    old = (ready.home / "master.key").read_text().strip()
    new = masterkey.encode(masterkey.generate())
    env = {"LOGIC_MASTER_KEY": old, "LOGIC_MASTER_KEY_NEXT": new}
    master = ready("keys", "rotate", "--master", "--json", env=env)
    assert master.exit_code == 0, master.output
    assert json.loads(master.stdout) == {"master_key": "LOGIC_MASTER_KEY_NEXT"}
    assert not (ready.home / "master.key.new").exists()
    again = ready("keys", "rotate", "--master", env=env)
    assert again.exit_code == 1
    assert "wrapped by LOGIC_MASTER_KEY_NEXT already" in again.output
    assert new not in again.output and old not in again.output
    listed = ready("secrets", "list", env={"LOGIC_MASTER_KEY": new})  # the next key alone opens it now
    assert listed.exit_code == 0 and "API_KEY" in listed.stdout
    (ready.home / "master.key").write_text(new + "\n")
    assert _reveal(ready.home, owner, "API_KEY") == VALUE


def test_keys_rotate_master_to_the_next_key_says_what_to_do_on_every_node(ready):
    env = {
        "LOGIC_MASTER_KEY": (ready.home / "master.key").read_text().strip(),
        "LOGIC_MASTER_KEY_NEXT": masterkey.encode(masterkey.generate()),
    }
    human = ready("keys", "rotate", "--master", env=env)
    assert human.exit_code == 0, human.output
    assert "On every node, in any order: make it LOGIC_MASTER_KEY and unset LOGIC_MASTER_KEY_NEXT" in human.stdout


def test_audit(ready):
    store = _open(ready.home)
    owner = store.identity.first_admin().owner
    store.secrets.create(owner, "OTHER", "other-value")
    store.secrets.record_access(
        [
            Access(owner, "API_KEY", "logic_function", "fn-1", "reformat", "run-1", "2026-01-01T00:00:01.000000Z"),
            Access(owner, "OTHER", "integration", "int-1", "notify", None, "2026-01-01T00:00:02.000000Z"),
        ]
    )
    store.close()
    rows = json.loads(ready("audit", "--json").stdout)
    assert [r["secret"] for r in rows] == ["OTHER", "API_KEY"]
    assert set(rows[0]) == {"secret", "consumer_kind", "consumer", "consumer_id", "run_id", "at"}
    only = json.loads(ready("audit", "--secret", "API_KEY", "--json").stdout)
    assert only == [
        {
            "secret": "API_KEY",
            "consumer_kind": "logic_function",
            "consumer": "reformat",
            "consumer_id": "fn-1",
            "run_id": "run-1",
            "at": "2026-01-01T00:00:01.000000Z",
        }
    ]
    human = ready("audit", "--secret", "API_KEY")
    assert "reformat" in human.stdout and "run-1" in human.stdout
    assert "No accesses recorded." in ready("audit", "--org", "acme").stdout
    assert (
        json.loads(ready("secrets", "get", "API_KEY", "--json").stdout)["last_accessed_at"]
        == "2026-01-01T00:00:01.000000Z"
    )


def test_every_command_has_help(cli):
    from runtime.cli import cli as root

    assert cli("--help").exit_code == 0
    for group in ("secrets", "users", "orgs", "tokens", "keys"):
        for name, command in root.commands[group].commands.items():
            assert command.help, (group, name)
            assert cli(group, name, "--help").exit_code == 0


# a real process ------------------------------------------------------------------


def _run(home: Path, *args: str, stdin: bytes | None = None, env: dict | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    full_env.update({"LOGIC_HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_subprocess_init_create_list(logic_home):
    init = _run(logic_home, "init", "--json")
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["created"] is True
    created = _run(logic_home, "secrets", "create", "PIPED", stdin=b"piped-value-from-a-pipe\n")
    assert created.returncode == 0, created.stderr
    assert created.stdout == b"Created secret PIPED.\n"
    listing = _run(logic_home, "secrets", "list", "--json")
    assert [r["name"] for r in json.loads(listing.stdout)] == ["PIPED"]
    assert _reveal(logic_home, _admin_owner(logic_home), "PIPED") == "piped-value-from-a-pipe"
    for out in (init, created, listing):
        assert b"piped-value-from-a-pipe" not in out.stdout + out.stderr


def test_subprocess_errors_and_usage(logic_home):
    assert _run(logic_home, "init").returncode == 0
    bad = _run(logic_home, "secrets", "create", "1ABC", stdin=b"v\n")
    assert bad.returncode == 1
    assert bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [
        "Error: invalid secret name '1ABC': use upper-case letters, digits and _, not starting with a digit "
        "(e.g. API_KEY)"
    ]
    usage = _run(logic_home, "secrets", "create", "X", "--value", "abc")
    assert usage.returncode == 2
    assert b"No such option" in usage.stderr


def test_subprocess_invalid_utf8_and_wrong_key(logic_home):
    assert _run(logic_home, "init").returncode == 0
    bad = _run(logic_home, "secrets", "create", "BINARY", stdin=b"\x80\x81\xfe")
    assert (bad.returncode, bad.stderr) == (1, b"Error: secret value is not valid UTF-8 text\n")
    wrong = _run(logic_home, "secrets", "list", env={"LOGIC_MASTER_KEY": masterkey.encode(masterkey.generate())})
    assert (wrong.returncode, wrong.stderr) == (1, b"Error: the master key does not match this database\n")


def test_hidden_prompt_on_a_tty(logic_home):
    """On a terminal the value is asked twice with echo off, and never shown."""
    import pty

    assert _run(logic_home, "init").returncode == 0
    secret = "typed-on-a-tty-9f8e"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env["LOGIC_HOME"] = str(logic_home)
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(Path(__file__).resolve().parents[2])
        os.execve(sys.executable, [sys.executable, "-m", "runtime.cli", "secrets", "create", "TTY_KEY"], env)
    seen = b""
    deadline = time.monotonic() + 30

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {marker!r}; got {seen!r}"
            ready_fds, _, _ = select.select([fd], [], [], remaining)
            if ready_fds:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"process ended before {marker!r}; got {seen!r}"
                seen += chunk

    try:
        read_until(b"Secret value")
        os.write(fd, secret.encode() + b"\n")
        read_until(b"confirmation")
        os.write(fd, secret.encode() + b"\n")
        read_until(b"Created secret TTY_KEY.")
    finally:
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert secret.encode() not in seen
    assert _reveal(logic_home, _admin_owner(logic_home), "TTY_KEY") == secret


def test_a_stale_pending_key_does_not_confuse_the_cli(ready):
    """A crash left master.key.new behind; the next command cleans it up and works."""
    masterkey.write_key_file(ready.home / "master.key.new", masterkey.generate())
    assert ready("secrets", "list").exit_code == 0
    assert not (ready.home / "master.key.new").exists()
