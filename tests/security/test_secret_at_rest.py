"""Promise: a stored secret value never shows up at rest or in any output.

Checked, for one distinctive value and its common encodings (base64 at every
offset, URL-safe base64, hex): the database file and its -wal/-shm files after
create, update, rotation and delete; the output of every command, its --json
form and its errors; every error message; the repr/str of every object the
service returns; the audit table.
"""

from __future__ import annotations

import base64
import binascii
import json
import traceback
from pathlib import Path

import pytest

from runtime.service import Service
from store import Settings, Store, masterkey
from store.errors import LogicError
from store.secrets import Access
from tests.conftest import BACKENDS

VALUE = "s3cr3t-AT-REST-7c41e9b2-\u00fcber-\u2603"
SECOND = "second-AT-REST-0d8f33aa-value"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's store-backed tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


def _forms(value: str) -> list[bytes]:
    raw = value.encode("utf-8")
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            # The characters that encode raw[offset:] are the same wherever it sits at a
            # 3-byte boundary; drop the last group, which depends on what follows.
            encoded = encode(raw[offset:])
            forms.append(encoded[: len(encoded) - 4])
    return [f for f in forms if len(f) >= 12]


def leaks(haystack: bytes | str, value: str = VALUE) -> list[bytes]:
    data = haystack.encode("utf-8", "surrogateescape") if isinstance(haystack, str) else haystack
    return [f for f in _forms(value) if f in data]


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: v.encode(),
        lambda v: base64.b64encode(v.encode()),
        lambda v: base64.b64encode(b"x" + v.encode()),
        lambda v: base64.b64encode(b"xy" + v.encode()),
        lambda v: base64.urlsafe_b64encode(b"x" + v.encode()),
        lambda v: binascii.hexlify(v.encode()),
        lambda v: v.encode().hex().upper().encode(),
    ],
    ids=["plain", "b64", "b64+1", "b64+2", "urlsafe+1", "hex", "HEX"],
)
def test_the_detector_finds_every_form(encode):
    assert leaks(b"prefix " + encode(VALUE) + b" suffix")


def every_value(tables: dict[str, list[tuple]]) -> bytes:
    """Every stored value of every row (the db_rows fixture's), as its bytes: a BLOB as it
    is, text as UTF-8, so the detector sees a value's plain, hex and base64 forms alike."""
    return b"\x1f".join(
        v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogateescape")
        for rows in tables.values()
        for row in rows
        for v in row
    )


def _disk(settings: Settings) -> bytes:
    parts = []
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(settings.db_path) + suffix)
        if path.exists():
            parts.append(path.read_bytes())
    return b"".join(parts)


@pytest.mark.sqlite_only  # PostgreSQL's data files: tests/security/test_redteam_postgres.py
def test_database_wal_and_shm_never_hold_the_value(store, settings):
    owner = store.identity.first_admin().owner
    store.secrets.create(owner, "AT_REST", VALUE)
    assert Path(str(settings.db_path) + "-wal").exists()
    assert leaks(_disk(settings)) == []
    store.secrets.update(owner, "AT_REST", SECOND)
    assert leaks(_disk(settings)) == [] and leaks(_disk(settings), SECOND) == []
    store.rotate_data_key()
    store.rotate_master_key()
    assert leaks(_disk(settings)) == [] and leaks(_disk(settings), SECOND) == []
    store.secrets.update(owner, "AT_REST", VALUE)
    store.secrets.delete(owner, "AT_REST")
    assert leaks(_disk(settings)) == []
    store.close()
    assert leaks(_disk(settings)) == []  # after the checkpoint into the main file
    for path in settings.home.iterdir():
        assert leaks(path.read_bytes()) == [], path


def test_audit_rows_hold_names_never_values(store):
    owner = store.identity.first_admin().owner
    store.secrets.create(owner, "AUDITED", VALUE)
    store.secrets.record_access(
        [Access(owner, "AUDITED", "logic_function", "f1", "fn", "r1", "2026-01-01T00:00:00.000000Z")]
    )
    rows = store.db.all("SELECT * FROM secret_access")
    assert rows and all(leaks(repr(tuple(r))) == [] for r in rows)
    assert all(leaks(repr(a)) == [] for a in store.secrets.audit(owner))


def test_errors_never_contain_the_value(store):
    owner = store.identity.first_admin().owner
    store.secrets.create(owner, "EXISTING", VALUE)
    attempts = [
        lambda: store.secrets.create(owner, "EXISTING", VALUE),  # duplicate
        lambda: store.secrets.create(owner, "HUGE", VALUE * 5000),  # too large
        lambda: store.secrets.create(owner, "BYTES", VALUE.encode() + b"\xff"),  # invalid UTF-8
        lambda: store.secrets.update(owner, "MISSING", VALUE),  # unknown
        lambda: store.secrets.create(owner, "EMPTY", ""),
    ]
    for attempt in attempts:
        with pytest.raises(LogicError) as info:
            attempt()
        text = "".join(traceback.format_exception(info.value))
        assert leaks(str(info.value)) == [] and leaks(repr(info.value)) == [] and leaks(text) == []
    # a tampered row: the error names the secret, never a (garbage or real) value
    row = store.db.one("SELECT id, CAST(ciphertext AS BLOB) FROM secrets WHERE name = 'EXISTING'")
    tampered = bytearray(bytes(row[1]))
    tampered[-1] ^= 1  # one bit of the tag flipped (a byte overwritten could have held that byte already)
    with store.db.transaction() as conn:
        conn.execute("UPDATE secrets SET ciphertext = ? WHERE id = ?", (bytes(tampered), row[0]))
    with pytest.raises(LogicError) as info:
        store.secrets.reveal(owner, "EXISTING")
    assert "EXISTING" in str(info.value) and leaks(str(info.value)) == []


def test_returned_objects_never_show_the_value(store, settings):
    service = Service(store)
    admin = service.actor()
    objects = [
        service.create_secret(admin, "SHOWN", VALUE),
        service.update_secret(admin, "SHOWN", VALUE),
        service.get_secret(admin, "SHOWN"),
        service.list_secrets(admin),
        store.secrets.reveal(admin.owner, "SHOWN"),
        store,
        store.ring,
        store.secrets,
        store.db,
        service,
        admin,
        settings,
    ]
    store.secrets.record_access(
        [Access(admin.owner, "SHOWN", "integration", "i", "n", None, "2026-01-01T00:00:00.000000Z")]
    )
    objects.append(service.audit(admin, "SHOWN"))
    for obj in objects:
        assert leaks(repr(obj)) == [] and leaks(str(obj)) == [], type(obj)


def test_the_master_key_stays_out_of_settings_reprs(logic_home, monkeypatch):
    key = masterkey.encode(masterkey.generate())
    monkeypatch.setenv("LOGIC_MASTER_KEY", key)
    settings = Settings()
    assert key not in repr(settings) and key not in str(settings)
    store, result = Store.initialize(settings)
    assert key not in repr(result)
    store.close()


def test_no_command_output_shows_the_value(cli, settings, db_rows, tmp_path):
    outputs = []

    def run(*args, input=None):
        result = cli(*args, input=input)
        outputs.append((args, result.stdout + result.stderr))
        return result

    assert run("init").exit_code == 0
    value_file = tmp_path / "v.txt"
    value_file.write_text(VALUE)
    assert run("secrets", "create", "PIPED", input=VALUE + "\n").exit_code == 0
    assert run("secrets", "create", "FILED", "--value-file", str(value_file), "--json").exit_code == 0
    assert run("secrets", "update", "PIPED", "--json", input=VALUE).exit_code == 0
    assert run("orgs", "create", "acme").exit_code == 0
    assert run("secrets", "create", "ORG", "--org", "acme", input=VALUE).exit_code == 0
    for extra in ([], ["--json"]):
        for args in (
            ["secrets", "list"],
            ["secrets", "get", "PIPED"],
            ["secrets", "list", "--org", "acme"],
            ["secrets", "get", "ORG", "--org", "acme"],
            ["audit"],
            ["audit", "--secret", "PIPED"],
        ):
            assert run(*args, *extra).exit_code == 0
    # refused commands, with the value on their input
    for args, stdin in (
        (["secrets", "create", "PIPED"], VALUE),
        (["secrets", "create", "HUGE"], VALUE * 5000),
        (["secrets", "create", "BAD"], VALUE.encode() + b"\xff"),
        (["secrets", "update", "MISSING"], VALUE),
        (["secrets", "create", "lower"], VALUE),
        (["secrets", "create", "X", "--value", VALUE], None),
    ):
        assert run(*args, input=stdin).exit_code in (1, 2)
    assert run("keys", "rotate", "--json").exit_code == 0
    assert run("keys", "rotate", "--master").exit_code == 0
    assert run("tokens", "create").exit_code == 0
    assert run("secrets", "delete", "FILED", "--json").exit_code == 0
    for args, text in outputs:
        assert leaks(text) == [], args
    assert json.loads(cli("secrets", "get", "PIPED", "--json").stdout)["name"] == "PIPED"
    store = Store.open(Settings(home=cli.home))
    assert store.secrets.reveal(store.identity.first_admin().owner, "PIPED").reveal() == VALUE
    store.close()
    assert leaks(every_value(db_rows())) == []  # every row of every table
