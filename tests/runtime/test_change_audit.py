"""Every change made through the Service is in the change audit, with who, when, what and from
where; nothing else is, no value ever is, and a refused change leaves no row. Plus the CLI's
`logic audit --changes` and `logic audit verify`.

The walk over the Service's public methods is exhaustive on purpose: a method added later
fails `test_every_public_method_is_classified` until someone says whether it changes
something, and a change method without its scenario below fails too.
"""

from __future__ import annotations

import base64
import inspect
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.manifest import files_from_json
from runtime.service import Service
from store import Store
from store.errors import Conflict, DeployError, InvalidInput, NotFound, PermissionDenied
from store.identity import User
from tests.conftest import BACKENDS
from tests.support import in_process_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


SECRET_VALUE = "change-audit-secret-V4lue-93kq"
ENV_VALUE = "change-audit-env-V4lue-51zp"
SOURCE = "def main(event, secrets):\n    return len(secrets.API_KEY)\n"
FUNCTION = {
    "name": "reformat",
    "secrets": ["API_KEY"],
    "source": SOURCE,
    "triggers": [{"type": "event", "event_name": "sensor-test"}],
}
WEBHOOK = {
    "name": "notify",
    "event": "sensor/",
    "url": "https://api.example.com/?k={{{API_KEY}}}",
    "secrets": ["API_KEY"],
}


class Clock:
    def __init__(self) -> None:
        # From the real time, not a fixed date: `logic init` stamps its change (the admin
        # created) with the real clock, and a fixed date behind it made that row newer than
        # any retention the test moves past (the prune test failed from 2026-12-02 12:00 on).
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    service: Service
    admin: User
    alice: User
    bob: User
    clock: Clock

    def rows(self) -> list[sqlite3.Row]:
        return self.service.store.db.all("SELECT * FROM changes ORDER BY id")


@pytest.fixture
def world(settings):
    Store.initialize(settings)[0].close()
    clock = Clock()
    service = in_process_service(settings, clock=clock)
    admin = service.actor()
    alice = service.create_user(admin, "alice")
    bob = service.create_user(admin, "bob")
    service.create_org(alice, "acme")
    service.create_secret(alice, "API_KEY", SECRET_VALUE)
    service.create_secret(alice, "SPARE", SECRET_VALUE + "-spare")
    service.set_env(alice, "RETRY", ENV_VALUE)
    service.create_ledger(alice, "counters", "what we counted")
    service.deploy_function(alice, files_from_json(FUNCTION))
    service.create_integration(alice, WEBHOOK)
    yield World(service, admin, alice, bob, clock)
    service.close()


def values_in(text: str) -> list[str]:
    """Which of the two values (or a common encoding of one) `text` holds."""
    found = []
    for value in (SECRET_VALUE, ENV_VALUE):
        forms = [value, base64.b64encode(value.encode()).decode(), value.encode().hex()]
        if any(form in text for form in forms):
            found.append(value)
    return found


# the walk ------------------------------------------------------------------------

Scenario = Callable[[World], Any]
Expected = tuple[str, str, str, str | None]  # action, target_kind, target, owner


def _restore(w: World) -> None:
    w.service.update_secret(w.alice, "API_KEY", SECRET_VALUE + "-v2")
    w.service.restore_secret(w.alice, "API_KEY", 1)


def _revoke(w: World) -> None:
    w.service.create_token(w.alice, label="to revoke")
    token_id = w.service.list_tokens(w.alice)[-1]["id"]
    w.service.revoke_token(w.alice, token_id)


def _temporary(w: World) -> None:
    with w.service.temporary_token(w.alice, "a live tail"):
        pass


CHANGES: dict[str, list[tuple[Scenario, Expected]]] = {
    "create_secret": [
        (
            lambda w: w.service.create_secret(w.alice, "NEW_KEY", SECRET_VALUE),
            ("secret.create", "secret", "NEW_KEY", "user:alice"),
        ),
        (
            lambda w: w.service.create_secret(w.alice, "ORG_KEY", SECRET_VALUE, "acme"),
            ("secret.create", "secret", "ORG_KEY", "org:acme"),
        ),
    ],
    "update_secret": [
        (
            lambda w: w.service.update_secret(w.alice, "API_KEY", SECRET_VALUE + "!"),
            ("secret.update", "secret", "API_KEY", "user:alice"),
        )
    ],
    "delete_secret": [
        (lambda w: w.service.delete_secret(w.alice, "SPARE"), ("secret.delete", "secret", "SPARE", "user:alice"))
    ],
    "restore_secret": [(_restore, ("secret.restore", "secret", "API_KEY", "user:alice"))],
    "import_secrets": [
        (
            lambda w: w.service.import_secrets(
                w.alice, f"IMPORTED_A={SECRET_VALUE}-a\nIMPORTED_B='{SECRET_VALUE}-b'\n"
            ),
            ("secret.create", "secret", "IMPORTED_B", "user:alice"),
        )
    ],
    "set_env": [
        (lambda w: w.service.set_env(w.alice, "RETRY", ENV_VALUE + "2"), ("env.set", "env", "RETRY", "user:alice"))
    ],
    "delete_env": [(lambda w: w.service.delete_env(w.alice, "RETRY"), ("env.delete", "env", "RETRY", "user:alice"))],
    "create_ledger": [
        (lambda w: w.service.create_ledger(w.alice, "seen"), ("ledger.create", "ledger", "seen", "user:alice"))
    ],
    "describe_ledger": [
        (
            lambda w: w.service.describe_ledger(w.alice, "counters", "new words"),
            ("ledger.describe", "ledger", "counters", "user:alice"),
        )
    ],
    "archive_ledger": [
        (
            lambda w: w.service.archive_ledger(w.alice, "counters"),
            ("ledger.archive", "ledger", "counters", "user:alice"),
        )
    ],
    "write_ledger": [
        (
            lambda w: w.service.write_ledger(w.alice, "counters", "replace", {"n": ENV_VALUE}),
            ("ledger.write", "ledger", "counters", "user:alice"),
        )
    ],
    "create_user": [(lambda w: w.service.create_user(w.admin, "carol"), ("user.create", "user", "carol", None))],
    "create_org": [(lambda w: w.service.create_org(w.alice, "beta"), ("org.create", "org", "beta", "org:beta"))],
    "add_member": [
        (lambda w: w.service.add_member(w.alice, "acme", "bob"), ("org.add_member", "org", "acme", "org:acme"))
    ],
    "create_token": [
        (lambda w: w.service.create_token(w.alice), ("token.create", "token", "*", "user:alice")),
        (lambda w: w.service.create_token(w.admin, "bob"), ("token.create", "token", "*", "user:bob")),
    ],
    "revoke_token": [(_revoke, ("token.revoke", "token", "*", "user:alice"))],
    "temporary_token": [(_temporary, ("token.revoke", "token", "*", "user:alice"))],
    "rotate_keys": [
        (lambda w: w.service.rotate_keys(w.admin), ("keys.rotate", "key", "data", None)),
        (lambda w: w.service.rotate_keys(w.admin, master=True), ("keys.rotate_master", "key", "master", None)),
    ],
    "deploy_function": [
        (
            lambda w: w.service.deploy_function(w.alice, files_from_json(FUNCTION)),
            ("function.deploy", "function", "reformat", "user:alice"),
        )
    ],
    "deploy_tested": [
        (
            lambda w: w.service.deploy_tested(
                w.alice, files_from_json({**FUNCTION, "name": "tested"}), event_name="sensor-test"
            ),
            ("function.deploy", "function", "tested", "user:alice"),
        )
    ],
    "set_function_enabled": [
        (
            lambda w: w.service.set_function_enabled(w.alice, "reformat", False),
            ("function.disable", "function", "reformat", "user:alice"),
        ),
        (
            lambda w: w.service.set_function_enabled(w.alice, "reformat", True),
            ("function.enable", "function", "reformat", "user:alice"),
        ),
    ],
    "delete_function": [
        (
            lambda w: w.service.delete_function(w.alice, "reformat"),
            ("function.delete", "function", "reformat", "user:alice"),
        )
    ],
    "create_integration": [
        (
            lambda w: w.service.create_integration(w.alice, {**WEBHOOK, "name": "other"}),
            ("integration.create", "integration", "other", "user:alice"),
        )
    ],
    "update_integration": [
        (
            lambda w: w.service.update_integration(w.alice, "notify", {**WEBHOOK, "event": "x/"}),
            ("integration.update", "integration", "notify", "user:alice"),
        )
    ],
    "delete_integration": [
        (
            lambda w: w.service.delete_integration(w.alice, "notify"),
            ("integration.delete", "integration", "notify", "user:alice"),
        )
    ],
}


def _run(w: World) -> dict[str, Any]:
    return w.service.execute_function(w.alice, "reformat", event_name="sensor-test", data="1")


def _session(w: World) -> None:
    token = w.service.create_token(w.bob)  # itself a change, made before counting
    session_id, _ = w.service.sign_in(token)
    w.service.session(session_id)
    w.service.sign_out(session_id)


# Public methods that change nothing the change audit covers: reads, runs (their records
# are the runs' own history), events, console sessions, housekeeping. Each is called here
# and must add no row.
NOT_CHANGES: dict[str, Scenario] = {
    "actor": lambda w: w.service.actor("alice"),
    "authenticate": lambda w: w.service.authenticate(w.service.create_token(w.bob)),
    "audit": lambda w: w.service.audit(w.alice),
    "check_function": lambda w: w.service.check_function("user:alice", files_from_json(FUNCTION)),
    "check_secret_name": lambda w: w.service.check_secret_name("OK_NAME"),
    "execute_function": _run,
    "function_runs": lambda w: w.service.function_runs(w.alice, "reformat"),
    "function_triggers": lambda w: w.service.function_triggers(w.alice, "reformat"),
    "function_versions": lambda w: w.service.function_versions(w.alice, "reformat"),
    "get_env": lambda w: w.service.get_env(w.alice, "RETRY"),
    "get_function": lambda w: w.service.get_function(w.alice, "reformat"),
    "get_integration": lambda w: w.service.get_integration(w.alice, "notify"),
    "get_ledger": lambda w: w.service.get_ledger(w.alice, "counters"),
    "get_run": lambda w: w.service.get_run(w.alice, _run(w)["id"]),
    "get_secret": lambda w: w.service.get_secret(w.alice, "API_KEY"),
    "integration_logs": lambda w: w.service.integration_logs(w.alice, "notify"),
    "ledger_version": lambda w: pytest.raises(NotFound, w.service.ledger_version, w.alice, "counters", 1),
    "ledger_versions": lambda w: w.service.ledger_versions(w.alice, "counters"),
    "list_changes": lambda w: w.service.list_changes(w.alice),
    "list_env": lambda w: w.service.list_env(w.alice),
    "list_functions": lambda w: w.service.list_functions(w.alice),
    "list_integrations": lambda w: w.service.list_integrations(w.alice),
    "list_ledgers": lambda w: w.service.list_ledgers(w.alice),
    "list_orgs": lambda w: w.service.list_orgs(w.alice),
    "list_secrets": lambda w: w.service.list_secrets(w.alice),
    "list_tokens": lambda w: w.service.list_tokens(w.alice),
    "owner_for": lambda w: w.service.owner_for(w.alice, "acme"),
    "prune_history": lambda w: w.service.prune_history(),
    "publish_event": lambda w: w.service.publish_event(w.alice, "sensor-test", "1"),
    "replay_run": lambda w: w.service.replay_run(w.alice, _run(w)["id"]),
    "runs_today": lambda w: w.service.runs_today(w.alice),
    "secret_exists": lambda w: w.service.secret_exists(w.alice, "API_KEY"),
    "secret_versions": lambda w: w.service.secret_versions(w.alice, "API_KEY"),
    "session": _session,
    "sign_in": _session,
    "sign_out": _session,
    "verify_changes": lambda w: w.service.verify_changes(w.admin),
}
# The process's own machinery, not an action of a user.
# migrate_database: the schema, before any actor or key (it needs no master key, so no change row).
LIFECYCLE = {"open", "initialize", "migrate_database", "close", "dispatcher", "scheduler", "engine"}


def public_methods() -> set[str]:
    return {name for name, _ in inspect.getmembers(Service) if not name.startswith("_")}


def test_every_public_method_is_classified():
    classified = set(CHANGES) | set(NOT_CHANGES) | LIFECYCLE
    assert public_methods() - classified == set(), "classify these: a change (CHANGES) or not (NOT_CHANGES)"
    assert classified - public_methods() == set(), "these are gone from the Service"
    assert not set(CHANGES) & set(NOT_CHANGES)


SCENARIOS = [(name, i) for name, cases in CHANGES.items() for i in range(len(cases))]


@pytest.mark.parametrize("method, case", SCENARIOS, ids=[f"{m}-{i}" for m, i in SCENARIOS])
def test_every_change_is_recorded(world, method, case):
    scenario, (action, kind, target, owner) = CHANGES[method][case]
    before = len(world.rows())
    world.clock.now += timedelta(minutes=5)
    scenario(world)
    rows = world.rows()
    assert len(rows) > before, f"{method} recorded nothing"
    last = rows[-1]
    assert (last["action"], last["target_kind"], last["owner"]) == (action, kind, owner)
    assert target == "*" or last["target"] == target
    assert last["via"] == "cli"  # these users act as local commands do
    assert last["at"] == world.clock.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the service's clock
    assert last["actor"] in (world.alice.name, world.admin.name)
    assert world.service.store.changes.verify().ok
    assert values_in(repr([tuple(r) for r in rows])) == []


@pytest.mark.parametrize("method", sorted(NOT_CHANGES))
def test_what_is_not_a_change_records_nothing(world, method):
    before = world.rows()
    NOT_CHANGES[method](world)
    after = world.rows()
    made = [r for r in after[len(before) :] if r["action"] != "token.create"]  # a scenario's own setup
    assert made == [], [tuple(r) for r in made]


def test_the_rows_say_what_changed(world):
    s, alice = world.service, world.alice
    s.update_secret(alice, "API_KEY", SECRET_VALUE + "-2")
    _restore(world)
    s.deploy_function(alice, files_from_json(FUNCTION))
    s.write_ledger(alice, "counters", "merge", {"a": 1})
    s.rotate_keys(world.admin)
    token = s.create_token(world.admin, "bob", label=SECRET_VALUE)  # a label is not recorded
    token_id = s.store.identity.token_holder(token)[0]
    details: dict[tuple[str, str], dict] = {}
    for row in s.list_changes(alice):  # newest first: keep each target's newest
        details.setdefault((row.action, row.target), row.details)
    assert details[("secret.restore", "API_KEY")] == {"restored": 1, "version": 4}
    assert details[("secret.update", "API_KEY")] == {"version": 3}
    fn = s.get_function(alice, "reformat")
    assert details[("function.deploy", "reformat")] == {"id": fn.id, "version": 2}
    assert details[("ledger.write", "counters")] == {"mode": "merge"}
    (rotation,) = [c for c in s.list_changes(world.admin) if c.action == "keys.rotate"]
    assert set(rotation.details) == {"data_key_id", "secrets_reencrypted"}
    (made,) = s.list_changes(world.bob)
    assert (made.actor, made.action, made.target, made.details) == (
        "root",
        "token.create",
        str(token_id),
        {"user": "bob"},
    )
    assert values_in(repr([tuple(r) for r in world.rows()])) == []


# refused changes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt, error",
    [
        (lambda w: w.service.create_secret(w.alice, "API_KEY", SECRET_VALUE), Conflict),
        (lambda w: w.service.create_secret(w.alice, "bad name", SECRET_VALUE), InvalidInput),
        (lambda w: w.service.delete_secret(w.alice, "API_KEY"), Conflict),  # in use
        (lambda w: w.service.update_secret(w.bob, "API_KEY", SECRET_VALUE), NotFound),
        (lambda w: w.service.create_secret(w.bob, "X", SECRET_VALUE, "acme"), PermissionDenied),
        (lambda w: w.service.restore_secret(w.alice, "API_KEY", 99), NotFound),
        (lambda w: w.service.import_secrets(w.alice, "GOOD=" + SECRET_VALUE + "\nbad name=x\n"), InvalidInput),
        (lambda w: w.service.set_env(w.alice, "LOGIC_X", ENV_VALUE), InvalidInput),
        (lambda w: w.service.delete_env(w.alice, "NOPE"), NotFound),
        (lambda w: w.service.create_ledger(w.alice, "counters"), Conflict),
        (lambda w: w.service.create_user(w.bob, "dave"), PermissionDenied),
        (lambda w: w.service.create_org(w.bob, "acme"), Conflict),
        (lambda w: w.service.add_member(w.bob, "acme", "bob"), PermissionDenied),
        (lambda w: w.service.revoke_token(w.bob, 1), NotFound),
        (lambda w: w.service.rotate_keys(w.bob), PermissionDenied),
        (lambda w: w.service.rotate_keys(w.bob, master=True), PermissionDenied),
        (lambda w: w.service.deploy_function(w.alice, files_from_json({**FUNCTION, "secrets": ["NOPE"]})), DeployError),
        (lambda w: w.service.delete_function(w.bob, "reformat"), NotFound),
        (lambda w: w.service.create_integration(w.alice, WEBHOOK), Conflict),
        (lambda w: w.service.delete_integration(w.bob, "notify"), NotFound),
    ],
)
def test_a_refused_change_leaves_no_row(world, attempt, error):
    before = [tuple(r) for r in world.rows()]
    with pytest.raises(error):
        attempt(world)
    assert [tuple(r) for r in world.rows()] == before
    assert world.service.store.changes.verify().ok


def test_a_change_whose_audit_row_fails_is_rolled_back(world, monkeypatch):
    """The change and its row commit together: no change without its row."""

    class AuditWriteFailed(Exception):
        pass

    def refuse(**_):
        raise AuditWriteFailed

    monkeypatch.setattr(world.service.store.changes, "record", refuse)
    key_file = (world.service.settings.key_path).read_bytes()
    with pytest.raises(AuditWriteFailed):
        world.service.create_secret(world.alice, "UNRECORDED", SECRET_VALUE)
    with pytest.raises(AuditWriteFailed):
        world.service.rotate_keys(world.admin)
    with pytest.raises(AuditWriteFailed):
        world.service.rotate_keys(world.admin, master=True)
    assert world.service.settings.key_path.read_bytes() == key_file
    assert not (world.service.settings.home / "master.key.new").exists()
    monkeypatch.undo()
    assert not world.service.secret_exists(world.alice, "UNRECORDED")
    # Both rotations rolled back: the ring still opens, with the key file it had.
    reopened = Store.open(world.service.settings)
    try:
        assert reopened.secrets.reveal("user:alice", "API_KEY").reveal() == SECRET_VALUE
        assert reopened.changes.verify().ok
    finally:
        reopened.close()
    assert world.service.store.secrets.reveal("user:alice", "API_KEY").reveal() == SECRET_VALUE


# listing rules ------------------------------------------------------------------


def test_each_owner_sees_only_its_own_changes(world):
    s = world.service
    s.create_secret(world.bob, "BOB_KEY", SECRET_VALUE)
    s.create_secret(world.alice, "ORG_KEY", SECRET_VALUE, "acme")
    assert {c.owner for c in s.list_changes(world.alice)} == {"user:alice"}
    assert {c.owner for c in s.list_changes(world.bob)} == {"user:bob"}
    assert {c.owner for c in s.list_changes(world.alice, "acme")} == {"org:acme"}
    with pytest.raises(PermissionDenied):
        s.list_changes(world.bob, "acme")
    # an admin's sandbox adds the machine-wide rows (users, keys), never another user's
    admin_rows = s.list_changes(world.admin)
    assert {c.owner for c in admin_rows} == {None}
    assert {c.action for c in admin_rows} >= {"init", "user.create"}


def test_filters_by_secret_and_function(world):
    s = world.service
    s.update_secret(world.alice, "API_KEY", SECRET_VALUE + "x")
    s.set_function_enabled(world.alice, "reformat", False)
    assert [c.action for c in s.list_changes(world.alice, secret="API_KEY")] == ["secret.update", "secret.create"]
    assert [c.action for c in s.list_changes(world.alice, function="reformat")] == [
        "function.disable",
        "function.deploy",
    ]
    assert s.list_changes(world.alice, secret="NEVER_EXISTED") == []
    with pytest.raises(InvalidInput, match="not both"):
        s.list_changes(world.alice, secret="API_KEY", function="reformat")


def test_only_admins_verify(world):
    with pytest.raises(PermissionDenied):
        world.service.verify_changes(world.alice)
    for bad in ("7", "x:" + "a" * 64, "3:short", "3:" + "g" * 64):
        with pytest.raises(InvalidInput, match="head: use ID:MAC"):
            world.service.verify_changes(world.admin, bad)


def test_housekeeping_prunes_old_changes_behind_a_checkpoint(world):
    s = world.service
    count = len(world.rows())
    world.clock.now += timedelta(days=s.settings.change_audit_retention_days + 1)
    s.set_env(world.alice, "FRESH", "1")
    assert s.prune_history()["change_rows"] == count  # every row before FRESH
    result = s.verify_changes(world.admin)
    assert result.ok and result.checkpoint_id is not None and result.rows >= 1


# the CLI -------------------------------------------------------------------------


@pytest.fixture
def ready(cli):
    assert cli("init").exit_code == 0
    assert cli("secrets", "create", "API_KEY", input=SECRET_VALUE).exit_code == 0
    assert cli("env", "set", "RETRY", ENV_VALUE).exit_code == 0
    assert cli("users", "create", "bob").exit_code == 0
    assert cli("orgs", "create", "acme").exit_code == 0
    return cli


def test_cli_lists_changes(ready):
    rows = json.loads(ready("audit", "--changes", "--json").stdout)
    # the admin's sandbox: its own rows and the machine-wide ones (users); the org's are the org's
    assert [r["action"] for r in rows] == ["user.create", "env.set", "secret.create", "init"]
    assert all(r["via"] == "cli" for r in rows)
    assert set(rows[0]) == {"id", "at", "actor", "via", "owner", "action", "target_kind", "target", "details"}
    org = json.loads(ready("audit", "--changes", "--org", "acme", "--json").stdout)
    assert [r["action"] for r in org] == ["org.create"]
    only = json.loads(ready("audit", "--changes", "--secret", "API_KEY", "--json").stdout)
    assert [(r["action"], r["target"]) for r in only] == [("secret.create", "API_KEY")]
    human = ready("audit", "--changes")
    assert "secret.create" in human.stdout and "env.set" in human.stdout and "RETRY" in human.stdout
    assert "No changes recorded." in ready("audit", "--changes", "--function", "nothing").stdout
    for result in (human, ready("audit", "--changes", "--json")):
        assert values_in(result.output) == []


def test_cli_pages_through_changes(ready):
    first = ready("audit", "--changes", "--limit", "2", "--json")
    assert len(json.loads(first.stdout)) == 2
    cursor = first.stderr.split("--cursor ")[1].strip()
    rest = json.loads(ready("audit", "--changes", "--limit", "2", "--cursor", cursor, "--json").stdout)
    assert [r["action"] for r in rest] == ["secret.create", "init"]


def test_cli_audit_without_changes_is_the_access_audit(ready):
    assert ready("audit").stdout.strip() == "No accesses recorded."
    usage = ready("audit", "--function", "reformat")
    assert usage.exit_code == 2 and "--function lists changes: add --changes" in usage.stderr


def test_cli_verify_ok_then_broken(ready):
    ok = ready("audit", "verify")
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: 5 change(s) verified.")
    head = ok.stdout.split("Head: ")[1].split()[0]
    assert ready("audit", "verify", "--head", head).exit_code == 0
    report = json.loads(ready("audit", "verify", "--json").stdout)
    assert report["ok"] and report["head"]["id"] == 5
    conn = sqlite3.connect(ready.home / "logic.db")
    conn.execute("DROP TRIGGER changes_append_only")
    conn.execute("UPDATE changes SET actor = 'mallory' WHERE id = 3")
    conn.commit()
    conn.close()
    broken = ready("audit", "verify")
    assert broken.exit_code == 1 and broken.stdout == ""
    assert broken.stderr.strip() == (
        "Error: the change audit does not verify: row 3 was edited, moved or inserted: "
        "its MAC does not match its content and place"
    )
    as_json = ready("audit", "verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["first_bad_id"] == 3


def test_cli_verify_catches_a_rollback_with_a_kept_head(ready):
    import shutil

    db = ready.home / "logic.db"
    ready("audit", "verify")  # nothing pending in the WAL once the CLI closed the store
    shutil.copy(db, ready.home / "older.db")
    assert ready("secrets", "update", "API_KEY", input=SECRET_VALUE + "-new").exit_code == 0
    kept = ready("audit", "verify").stdout.split("Head: ")[1].split()[0]
    for suffix in ("-wal", "-shm"):
        (ready.home / f"logic.db{suffix}").unlink(missing_ok=True)
    shutil.copy(ready.home / "older.db", db)
    assert ready("audit", "verify").exit_code == 0  # alone, an older copy is a genuine chain
    rolled_back = ready("audit", "verify", "--head", kept)
    assert rolled_back.exit_code == 1
    assert "the chain ends at row 5, before the kept head (row 6)" in rolled_back.stderr


def test_cli_verify_is_for_admins(ready):
    result = ready("--as", "bob", "audit", "verify")
    assert result.exit_code == 1 and "only an admin can verify the change audit" in result.stderr
