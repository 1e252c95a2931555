"""The barrier (KeyRing.seal/unseal): round trips, every tamper case, wrong keys."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from store import masterkey
from store.database import Database
from store.errors import DecryptionError, MasterKeyError
from store.keyring import BLOB_VERSION, NONCE_BYTES, KeyRing, secret_aad
from store.sensitive import MASK, Sensitive
from tests.support import BUSY_TIMEOUT_MS

OWNER, NAME, VALUE = "user:alice", "API_KEY", "barrier-test-value-\u00e9\u2603"
HEADER = 5  # version (1) + key id (4)


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    db = Database(tmp_path_factory.mktemp("ring") / "ring.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    db.migrate()
    keyring = KeyRing(db, masterkey.generate())
    keyring.add_key()
    return keyring


def test_round_trip_returns_a_sensitive(ring):
    blob = ring.seal(VALUE, OWNER, NAME)
    out = ring.unseal(blob, OWNER, NAME)
    assert isinstance(out, Sensitive)
    assert out.reveal() == VALUE
    assert repr(out) == str(out) == f"{out}" == MASK


def test_blob_layout_and_fresh_nonce(ring):
    a, b = ring.seal(VALUE, OWNER, NAME), ring.seal(VALUE, OWNER, NAME)
    assert a[0] == BLOB_VERSION
    assert ring.key_id_of(a) == ring.active_id
    assert a[HEADER : HEADER + NONCE_BYTES] != b[HEADER : HEADER + NONCE_BYTES]
    assert a != b
    assert len(a) == HEADER + NONCE_BYTES + len(VALUE.encode()) + 16
    assert VALUE.encode() not in a


def _flip(blob: bytes, index: int) -> bytes:
    out = bytearray(blob)
    out[index] ^= 0x01
    return bytes(out)


TAMPERS = {
    "header version": lambda b: _flip(b, 0),
    "key id": lambda b: _flip(b, 4),
    "key id high byte": lambda b: _flip(b, 1),
    "nonce first byte": lambda b: _flip(b, HEADER),
    "nonce last byte": lambda b: _flip(b, HEADER + NONCE_BYTES - 1),
    "body": lambda b: _flip(b, HEADER + NONCE_BYTES),
    "tag": lambda b: _flip(b, len(b) - 1),
    "tag first byte": lambda b: _flip(b, len(b) - 16),
    "truncated tag": lambda b: b[:-1],
    "truncated to header": lambda b: b[:HEADER],
    "truncated to nothing": lambda b: b"",
    "extended": lambda b: b + b"\x00",
}


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_every_tamper_is_a_clear_error_naming_the_secret(ring, how):
    blob = TAMPERS[how](ring.seal(VALUE, OWNER, NAME))
    with pytest.raises(DecryptionError) as info:
        ring.unseal(blob, OWNER, NAME)
    message = str(info.value)
    assert NAME in message and OWNER in message
    assert "cannot be decrypted" in message
    assert VALUE not in message and VALUE not in repr(info.value)


def test_unknown_format_and_unknown_key_are_named(ring):
    blob = ring.seal(VALUE, OWNER, NAME)
    with pytest.raises(DecryptionError, match="unknown format 2"):
        ring.unseal(bytes([2]) + blob[1:], OWNER, NAME)
    with pytest.raises(DecryptionError, match="data key 999 is not in the key ring"):
        ring.unseal(blob[:1] + (999).to_bytes(4, "big") + blob[HEADER:], OWNER, NAME)


@pytest.mark.parametrize(
    "owner, name",
    [
        ("user:bob", NAME),  # copied to another owner
        (OWNER, "OTHER_KEY"),  # copied to another name
        ("org:acme", "OTHER_KEY"),
        ("user:alice\x00API", "KEY"),  # separators cannot make two bindings collide
    ],
)
def test_a_blob_is_bound_to_its_owner_and_name(ring, owner, name):
    blob = ring.seal(VALUE, OWNER, NAME)
    with pytest.raises(DecryptionError, match="altered or belongs to another secret"):
        ring.unseal(blob, owner, name)


def test_associated_data_is_unambiguous():
    assert secret_aad("a\x00b", "c") != secret_aad("a", "b\x00c")
    assert secret_aad("ab", "c") != secret_aad("a", "bc")


def test_a_wrong_master_key_cannot_open_the_ring(ring):
    with pytest.raises(MasterKeyError, match="the master key does not match this database"):
        KeyRing(ring._db, masterkey.generate())


def test_open_tries_candidates_in_order(ring):
    wrong = masterkey.generate()
    with pytest.raises(MasterKeyError, match="does not match"):
        KeyRing.open(ring._db, [("a", wrong), ("b", masterkey.generate())])


def test_a_data_key_from_another_ring_does_not_decrypt(ring, tmp_path):
    db = Database(tmp_path / "other.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    db.migrate()
    other = KeyRing(db, masterkey.generate())
    other.add_key()
    assert other.active_id == ring.active_id  # same id, different key
    with pytest.raises(DecryptionError):
        other.unseal(ring.seal(VALUE, OWNER, NAME), OWNER, NAME)
    db.close()


def test_a_tampered_wrapped_data_key_is_a_master_key_error(tmp_path):
    db = Database(tmp_path / "r.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    db.migrate()
    key = masterkey.generate()
    KeyRing(db, key).add_key()
    wrapped = bytearray(db.one("SELECT wrapped FROM keyring")[0])
    wrapped[-1] ^= 1
    with db.transaction() as conn:
        conn.execute("UPDATE keyring SET wrapped = ?", (bytes(wrapped),))
    with pytest.raises(MasterKeyError):
        KeyRing(db, key)
    db.close()


# properties ----------------------------------------------------------------

bindings = st.tuples(st.text(max_size=20), st.text(max_size=20))


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(), where=bindings)
def test_property_round_trip_of_any_text(ring, value, where):
    owner, name = where
    assert ring.unseal(ring.seal(value, owner, name), owner, name).reveal() == value


@hsettings(max_examples=150, deadline=None)
@given(value=st.text(max_size=50), where=bindings, elsewhere=bindings)
def test_property_another_binding_never_decrypts(ring, value, where, elsewhere):
    if where == elsewhere:
        return
    blob = ring.seal(value, *where)
    with pytest.raises(DecryptionError) as info:
        ring.unseal(blob, *elsewhere)
    owner, name = elsewhere  # the message names the secret, and says nothing else (no value)
    assert str(info.value) == (
        f"secret {name} of {owner} cannot be decrypted: the stored value was altered or belongs to another secret"
    )
