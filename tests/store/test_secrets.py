"""SecretStore: records, write-only values, usages, access audit, tampered rows."""

from __future__ import annotations

from datetime import UTC

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from store.clock import parse_iso
from store.errors import Conflict, DecryptionError, InvalidInput, NotFound, TooLarge
from store.secrets import Access, SecretInfo

ALICE, BOB = "user:alice", "user:bob"
VALUE = "secretstore-test-value-9c1d"


def _row(store, owner, name):
    return store.db.one("SELECT * FROM secrets WHERE owner = ? AND name = ?", (owner, name))


def _all_rows(store):
    return {
        t: [tuple(r) for r in store.db.all(f"SELECT * FROM {t}")]
        for t in ("secrets", "secret_usages", "secret_access", "keyring")
    }


def test_create_returns_info_without_the_value(store):
    info = store.secrets.create(ALICE, "API_KEY", VALUE)
    assert isinstance(info, SecretInfo)
    assert (info.owner, info.name, info.usage_count, info.last_accessed_at) == (ALICE, "API_KEY", 0, None)
    assert info.created_at == info.updated_at
    assert parse_iso(info.created_at).tzinfo == UTC and info.created_at.endswith("Z")
    assert VALUE not in repr(info) and VALUE not in str(info.to_json())
    assert store.secrets.reveal(ALICE, "API_KEY").reveal() == VALUE
    assert VALUE.encode() not in bytes(_row(store, ALICE, "API_KEY")["ciphertext"])


def test_to_json_has_exactly_the_documented_keys(store):
    data = store.secrets.create(ALICE, "API_KEY", VALUE).to_json()
    assert list(data) == [
        "name",
        "created_at",
        "updated_at",
        "last_accessed_at",
        "usage_count",
        "logic_functions",
        "integrations",
    ]
    assert data["logic_functions"] == [] and data["integrations"] == []


def test_names_are_unique_per_owner_only(store):
    store.secrets.create(ALICE, "API_KEY", VALUE)
    store.secrets.create(BOB, "API_KEY", "other")
    before = _all_rows(store)
    with pytest.raises(Conflict, match="^secret API_KEY already exists$"):
        store.secrets.create(ALICE, "API_KEY", "again")
    assert _all_rows(store) == before
    assert store.secrets.reveal(ALICE, "API_KEY").reveal() == VALUE
    assert store.secrets.names(ALICE) == ["API_KEY"]


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("1ABC", VALUE, InvalidInput),
        ("abc", VALUE, InvalidInput),
        ("A-B", VALUE, InvalidInput),
        ("", VALUE, InvalidInput),
        ("A" * 65, VALUE, InvalidInput),
        ("OK", "", InvalidInput),
        ("OK", "x" * (64 * 1024 + 1), TooLarge),
        ("OK", b"\xc3\x28", InvalidInput),
    ],
)
def test_bad_input_changes_nothing(store, name, value, error):
    store.secrets.create(ALICE, "EXISTING", VALUE)
    before = _all_rows(store)
    with pytest.raises(error):
        store.secrets.create(ALICE, name, value)
    with pytest.raises((error, NotFound)):
        store.secrets.update(ALICE, name if name != "OK" else "EXISTING", value)
    assert _all_rows(store) == before


def test_exactly_the_limit_is_accepted(store):
    store.secrets.create(ALICE, "BIG", "x" * (64 * 1024))
    assert len(store.secrets.reveal(ALICE, "BIG")) == 64 * 1024


def test_update_replaces_the_value(store):
    created = store.secrets.create(ALICE, "API_KEY", VALUE)
    old_blob = bytes(_row(store, ALICE, "API_KEY")["ciphertext"])
    updated = store.secrets.update(ALICE, "API_KEY", "the-new-value")
    assert store.secrets.reveal(ALICE, "API_KEY").reveal() == "the-new-value"
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert bytes(_row(store, ALICE, "API_KEY")["ciphertext"]) != old_blob


def test_unknown_secret(store):
    for call in (
        lambda: store.secrets.update(ALICE, "NOPE", VALUE),
        lambda: store.secrets.delete(ALICE, "NOPE"),
        lambda: store.secrets.info(ALICE, "NOPE"),
        lambda: store.secrets.reveal(ALICE, "NOPE"),
    ):
        with pytest.raises(NotFound, match="^secret NOPE does not exist$"):
            call()
    assert store.db.one("SELECT count(*) FROM secrets")[0] == 0


def test_delete_only_when_unused(store):
    store.secrets.create(ALICE, "API_KEY", VALUE)
    store.secrets.create(ALICE, "OTHER", VALUE)
    store.secrets.set_usages(ALICE, "logic_function", "fn-1", "reformat", ["API_KEY", "OTHER"])
    store.secrets.set_usages(ALICE, "integration", "int-1", "notify", ["API_KEY"])
    info = store.secrets.info(ALICE, "API_KEY")
    assert (info.usage_count, info.logic_functions, info.integrations) == (2, ["reformat"], ["notify"])
    before = _all_rows(store)
    with pytest.raises(
        Conflict, match="^secret API_KEY is in use by function reformat, integration notify: remove it from them first$"
    ):
        store.secrets.delete(ALICE, "API_KEY")
    assert _all_rows(store) == before
    store.secrets.set_usages(ALICE, "logic_function", "fn-1", "reformat", ["OTHER"])  # replaces
    store.secrets.set_usages(ALICE, "integration", "int-1", "notify", [])
    store.secrets.delete(ALICE, "API_KEY")
    assert store.secrets.names(ALICE) == ["OTHER"]


def test_set_usages_refuses_unknown_names_and_kinds(store):
    store.secrets.create(ALICE, "API_KEY", VALUE)
    with pytest.raises(InvalidInput, match="secret NOPE does not exist for user:alice"):
        store.secrets.set_usages(ALICE, "logic_function", "fn", "f", ["API_KEY", "NOPE"])
    with pytest.raises(InvalidInput, match="secret API_KEY does not exist for user:bob"):
        store.secrets.set_usages(BOB, "logic_function", "fn", "f", ["API_KEY"])
    with pytest.raises(InvalidInput):
        store.secrets.set_usages(ALICE, "cron", "fn", "f", ["API_KEY"])
    assert store.db.one("SELECT count(*) FROM secret_usages")[0] == 0


def test_record_access_and_audit(store):
    store.secrets.create(ALICE, "API_KEY", VALUE)
    store.secrets.create(ALICE, "OTHER", VALUE)
    store.secrets.record_access(
        [
            Access(ALICE, "API_KEY", "logic_function", "fn-1", "reformat", "run-1", "2026-01-01T00:00:01.000000Z"),
            Access(ALICE, "API_KEY", "integration", "int-1", "notify", None, "2026-01-01T00:00:03.000000Z"),
            Access(ALICE, "OTHER", "logic_function", "fn-1", "reformat", "run-1", "2026-01-01T00:00:02.000000Z"),
        ]
    )
    assert store.secrets.info(ALICE, "API_KEY").last_accessed_at == "2026-01-01T00:00:03.000000Z"
    # an older access never moves last-accessed back
    store.secrets.record_access(
        [Access(ALICE, "API_KEY", "logic_function", "fn-1", "reformat", "run-0", "2025-01-01T00:00:00.000000Z")]
    )
    assert store.secrets.info(ALICE, "API_KEY").last_accessed_at == "2026-01-01T00:00:03.000000Z"
    trail = store.secrets.audit(ALICE, "API_KEY")
    assert [a.run_id for a in trail] == [None, "run-1", "run-0"]  # newest first
    assert len(store.secrets.audit(ALICE)) == 4
    assert store.secrets.audit(BOB) == []
    assert len(store.secrets.audit(ALICE, limit=1)) == 1
    store.secrets.record_access([])  # nothing to do


@pytest.mark.parametrize(
    "how",
    ["flip a byte", "swap two rows", "copy to another owner", "copy to another name", "edited into text", "emptied"],
)
def test_a_tampered_row_is_a_clear_error_naming_the_secret(store, how):
    store.secrets.create(ALICE, "API_KEY", VALUE)
    store.secrets.create(ALICE, "DB_PASS", "second-value-abc")
    store.secrets.create(BOB, "API_KEY", "bobs-value-xyz")
    blob = lambda o, n: bytes(_row(store, o, n)["ciphertext"])  # noqa: E731
    with store.db.transaction() as conn:
        put = lambda o, n, b: conn.execute(  # noqa: E731
            "UPDATE secrets SET ciphertext = ? WHERE owner = ? AND name = ?", (b, o, n)
        )
        if how == "flip a byte":
            b = bytearray(blob(ALICE, "API_KEY"))
            b[len(b) // 2] ^= 0x80
            put(ALICE, "API_KEY", bytes(b))
        elif how == "swap two rows":
            a, d = blob(ALICE, "API_KEY"), blob(ALICE, "DB_PASS")
            put(ALICE, "API_KEY", d)
            put(ALICE, "DB_PASS", a)
        elif how == "edited into text":
            put(ALICE, "API_KEY", "not a blob \u00e9")
        elif how == "emptied":
            put(ALICE, "API_KEY", b"")
        elif how == "copy to another owner":
            put(BOB, "API_KEY", blob(ALICE, "API_KEY"))
        else:
            put(ALICE, "DB_PASS", blob(ALICE, "API_KEY"))
    victim = {
        "flip a byte": (ALICE, "API_KEY"),
        "swap two rows": (ALICE, "API_KEY"),
        "edited into text": (ALICE, "API_KEY"),
        "emptied": (ALICE, "API_KEY"),
        "copy to another owner": (BOB, "API_KEY"),
        "copy to another name": (ALICE, "DB_PASS"),
    }[how]
    with pytest.raises(DecryptionError) as info:
        store.secrets.reveal(*victim)
    message = str(info.value)
    assert message.startswith(f"secret {victim[1]} of {victim[0]} cannot be decrypted")
    for plain in (VALUE, "second-value-abc", "bobs-value-xyz"):
        assert plain not in message


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=1, max_size=300))
def test_property_any_text_survives_the_database(store, value):
    store.secrets.create(ALICE, "PROP", value)
    try:
        assert store.secrets.reveal(ALICE, "PROP").reveal() == value
    finally:
        store.secrets.delete(ALICE, "PROP")
