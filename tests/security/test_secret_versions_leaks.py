"""Promise: old versions and imported values stay as secret as the current value.

Checked with the detector of test_secret_at_rest.py (the value, hex, base64 at every
offset): the database file and its -wal after updates, restores, imports and both key
rotations; every output of `secrets versions|restore|import` (human, --json, errors);
every answer of the API routes; the repr of what the parser and the service return.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.secrets_import import parse
from runtime.service import Service
from store import Settings, Store
from store.errors import LogicError
from tests.conftest import BACKENDS
from tests.security.test_secret_at_rest import _disk, every_value, leaks

OLD = "0ld-VERSION-value-4f1d88c2-\u00e9t\u00e9"
MIDDLE = "m1ddle-VERSION-value-9a0b7c6d"
NEW = "n3w-VERSION-value-e2e3f4a5"
IMPORTED = "1mported-VALUE-b7b8c9d0-multi"
ALL = (OLD, MIDDLE, NEW, IMPORTED)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's store-backed tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


def _clean(haystack: bytes | str) -> bool:
    return all(leaks(haystack, value) == [] for value in ALL)


@pytest.mark.sqlite_only  # PostgreSQL's data files: tests/security/test_redteam_postgres.py
def test_no_version_plaintext_in_the_database_file_or_wal(store, settings):
    service = Service(store)
    admin = service.actor()
    service.create_secret(admin, "ROTATED", OLD)
    service.update_secret(admin, "ROTATED", MIDDLE)
    service.update_secret(admin, "ROTATED", NEW)
    service.import_secrets(admin, f'ROTATED="{IMPORTED}\nsecond line"\n', update=True)
    assert _clean(_disk(settings))
    service.restore_secret(admin, "ROTATED", 1)
    service.restore_secret(admin, "ROTATED", 2)
    assert _clean(_disk(settings))
    store.rotate_data_key()
    assert _clean(_disk(settings))
    store.rotate_master_key()
    service.restore_secret(admin, "ROTATED", 3)
    assert store.secrets.reveal(admin.owner, "ROTATED").reveal() == NEW
    assert _clean(_disk(settings))
    store.close()
    assert _clean(_disk(settings))  # after the checkpoint into the main file
    for path in settings.home.iterdir():
        assert _clean(path.read_bytes()), path
    with sqlite3.connect(settings.db_path) as conn:
        assert _clean("\n".join(conn.iterdump()))


def test_errors_and_returned_objects_never_show_a_value(store):
    service = Service(store)
    admin = service.actor()
    service.create_secret(admin, "KEY", OLD)
    service.update_secret(admin, "KEY", MIDDLE)
    objects: list[object] = [
        service.secret_versions(admin, "KEY"),
        service.restore_secret(admin, "KEY", 1),
        parse(f"A_KEY={OLD}\nB_KEY='{MIDDLE}'\n", max_bytes=10_000, max_count=10),
        parse(json.dumps({"A_KEY": NEW}), max_bytes=10_000, max_count=10),
        service.import_secrets(admin, f"IMPORTED_ONE={IMPORTED}\n"),
    ]
    for obj in objects:
        assert _clean(repr(obj)) and _clean(str(obj)), type(obj)
    attempts = [
        lambda: service.import_secrets(admin, f"KEY={NEW}\nlower={OLD}\nDUP={MIDDLE}\nDUP={MIDDLE}\n"),
        lambda: service.import_secrets(admin, f'OPEN="{IMPORTED}\n{OLD}\n{NEW}=x\n'),
        lambda: service.import_secrets(admin, f'{{"KEY": "{NEW}", "{OLD}": "x", "N": ["{MIDDLE}"]}}', format="json"),
        lambda: service.import_secrets(admin, f'{{"KEY": "{NEW}",,}}'),
        lambda: service.import_secrets(admin, (f"A_KEY={OLD}\n" * 5000).encode() + b"\xff"),
        lambda: service.import_secrets(admin, f"A_KEY={OLD}".encode() + b"\xff"),
        lambda: service.restore_secret(admin, "KEY", 3),
        lambda: service.restore_secret(admin, "KEY", 99),
    ]
    for attempt in attempts:
        with pytest.raises(LogicError) as info:
            attempt()
        assert _clean(str(info.value)) and _clean(repr(info.value)), info.value
    # a version row tampered with: the error names the version, never a value
    with store.db.transaction() as conn:
        conn.execute("UPDATE secret_versions SET ciphertext = substr(ciphertext, 1, 40) || ?", (b"\x00" * 10,))
    with pytest.raises(LogicError) as info:
        service.restore_secret(admin, "KEY", 2)
    assert "version 2 of secret KEY" in str(info.value) and _clean(str(info.value))


def test_no_command_output_shows_a_value(cli, settings, db_rows, tmp_path):
    outputs: list[tuple[tuple[str, ...], str]] = []

    def run(*args: str, input: str | bytes | None = None):
        result = cli(*args, input=input)
        outputs.append((args, result.stdout + result.stderr))
        return result

    assert run("init").exit_code == 0
    assert run("secrets", "create", "KEY", input=OLD).exit_code == 0
    assert run("secrets", "update", "KEY", input=MIDDLE).exit_code == 0
    env_file = tmp_path / "x.env"
    env_file.write_text(f"export KEY={NEW}\nOTHER='{IMPORTED}'\n")
    assert run("secrets", "import", str(env_file)).exit_code == 1  # KEY exists
    assert run("secrets", "import", str(env_file), "--update", "--json").exit_code == 0
    assert run("secrets", "import", "-", input=f"bad name={OLD}\nKEY2={MIDDLE}\nKEY2={MIDDLE}\n").exit_code == 1
    assert run("secrets", "import", "-", input=json.dumps({"J": 1, "K": OLD})).exit_code == 1
    assert run("secrets", "import", "-", "--json", input=json.dumps({"J": OLD, "K": NEW})).exit_code == 0
    assert run("secrets", "import", "-", input=f'{{"{OLD}": "x"}}').exit_code == 1
    for extra in ([], ["--json"]):
        assert run("secrets", "versions", "KEY", *extra).exit_code == 0
        assert run("secrets", "list", *extra).exit_code == 0
    assert run("secrets", "restore", "KEY", "--version", "1").exit_code == 0
    assert run("secrets", "restore", "KEY", "--version", "2", "--json").exit_code == 0
    assert run("secrets", "restore", "KEY", "--version", "9").exit_code == 1
    assert run("keys", "rotate").exit_code == 0
    assert run("secrets", "restore", "KEY", "--version", "3").exit_code == 0
    assert run("secrets", "versions", "KEY", "--json").exit_code == 0
    for args, text in outputs:
        assert _clean(text), args
    store = Store.open(Settings(home=cli.home))
    try:
        assert store.secrets.reveal(store.identity.first_admin().owner, "KEY").reveal() == NEW
    finally:
        store.close()
    assert _clean(every_value(db_rows()))  # every row of every table


def test_no_api_answer_shows_a_value(settings):
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    admin = service.actor()
    service.create_secret(admin, "KEY", OLD)
    service.update_secret(admin, "KEY", MIDDLE)
    answers = []
    with TestClient(create_app(service), headers={"Authorization": f"Bearer {init.token}"}) as client:
        answers += [
            client.get("/v1/secrets/KEY/versions"),
            client.post("/v1/secrets/KEY/versions/1/restore"),
            client.post("/v1/secrets/KEY/versions/3/restore"),
            client.post("/v1/secrets/KEY/versions/77/restore"),
            client.post("/v1/secrets:import", json={"content": f"KEY={NEW}\nlower={OLD}\n"}),
            client.post("/v1/secrets:import", json={"content": f"KEY={NEW}\n", "update": True}),
            client.post("/v1/secrets:import", json={"content": f'{{"{OLD}": 1}}', "format": "json"}),
            client.post("/v1/secrets:import", json={"content": f"A={IMPORTED}", "format": "bogus"}),
            client.post("/v1/secrets:import", json={"content": IMPORTED * 40_000}),
            client.post("/v1/secrets:import", json={"content": f"A={IMPORTED}", "update": "sometimes"}),
            client.get("/v1/secrets/KEY/versions"),
            client.get("/v1/secrets"),
        ]
    service.close()
    assert [a.status_code for a in answers[:4]] == [200, 200, 409, 404]
    for answer in answers:
        assert _clean(answer.text), (answer.request.url, answer.text[:200])
