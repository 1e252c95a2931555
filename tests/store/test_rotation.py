"""Key rotation: data keys and the master key, including every interrupted step."""

from __future__ import annotations

import os

import pytest

from store import Settings, Store, masterkey
from store.errors import DecryptionError, MasterKeyError
from store.keyring import KeyRing

VALUES = {
    ("user:alice", "API_KEY"): "rotation-value-one",
    ("user:alice", "DB_PASS"): "rotation-value-two",
    ("org:acme", "API_KEY"): "rotation-value-three",
}


@pytest.fixture
def filled(store):
    for (owner, name), value in VALUES.items():
        store.secrets.create(owner, name, value)
    return store


def _readable(store) -> bool:
    return all(store.secrets.reveal(o, n).reveal() == v for (o, n), v in VALUES.items())


def _ring_rows(store):
    return [tuple(r) for r in store.db.all("SELECT id, wrapped FROM keyring ORDER BY id")]


def _ciphertexts(store):
    return [tuple(r) for r in store.db.all("SELECT owner, name, ciphertext FROM secrets ORDER BY id")]


# data key ----------------------------------------------------------------------


def test_rotate_data_key_reencrypts_and_drops_the_old_key(filled, settings):
    old_ids = filled.ring.key_ids
    before = _ciphertexts(filled)
    key_id, count = filled.rotate_data_key()
    assert count == len(VALUES)
    assert key_id not in old_ids
    assert [r[0] for r in filled.db.all("SELECT id FROM keyring")] == [key_id]
    assert filled.ring.key_ids == [key_id]
    after = _ciphertexts(filled)
    assert all(filled.ring.key_id_of(c) == key_id for _, _, c in after)
    assert [c for *_, c in before] != [c for *_, c in after]
    assert _readable(filled)
    filled.close()
    reopened = Store.open(settings)  # the old data key is really gone, values still open
    assert reopened.ring.key_ids == [key_id]
    assert _readable(reopened)
    reopened.close()


def test_interrupted_data_key_rotation_changes_nothing(filled, monkeypatch):
    ring_before, texts_before = _ring_rows(filled), _ciphertexts(filled)
    ids_before = filled.ring.key_ids
    real_seal, calls = KeyRing.seal, []

    def failing_seal(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # half-way through the re-encryption
            raise OSError("disk on fire")
        return real_seal(self, *args, **kwargs)

    monkeypatch.setattr(KeyRing, "seal", failing_seal)
    with pytest.raises(OSError):
        filled.rotate_data_key()
    monkeypatch.undo()
    assert _ring_rows(filled) == ring_before
    assert _ciphertexts(filled) == texts_before
    assert filled.ring.key_ids == ids_before
    assert _readable(filled)
    filled.secrets.update("user:alice", "DB_PASS", VALUES[("user:alice", "DB_PASS")])  # still writable
    assert filled.ring.key_id_of(_ciphertexts(filled)[1][2]) in ids_before


def test_rotation_stops_at_a_tampered_value_and_names_it(filled):
    ring_before = _ring_rows(filled)
    with filled.db.transaction() as conn:
        blob = bytearray(conn.execute("SELECT ciphertext FROM secrets WHERE name = 'DB_PASS'").fetchone()[0])
        blob[-3] ^= 0x40
        conn.execute("UPDATE secrets SET ciphertext = ? WHERE name = 'DB_PASS'", (bytes(blob),))
    texts_before = _ciphertexts(filled)
    with pytest.raises(DecryptionError, match="secret DB_PASS of user:alice cannot be decrypted"):
        filled.rotate_data_key()
    assert _ring_rows(filled) == ring_before
    assert _ciphertexts(filled) == texts_before


def test_a_store_opened_before_a_rotation_elsewhere_keeps_working(filled, settings):
    """Two processes: one rotates the data key, the other (a server) keeps writing."""
    other = Store.open(settings)
    other.rotate_data_key()
    other.close()
    # The first store still holds the dropped key in memory; it must not seal with it.
    filled.secrets.create("user:alice", "WRITTEN_AFTER", "written-after-rotation")
    filled.secrets.update("user:alice", "API_KEY", "updated-after-rotation")
    assert filled.secrets.reveal("user:alice", "DB_PASS").reveal() == VALUES[("user:alice", "DB_PASS")]
    fresh = Store.open(settings)
    assert fresh.secrets.reveal("user:alice", "WRITTEN_AFTER").reveal() == "written-after-rotation"
    assert fresh.secrets.reveal("user:alice", "API_KEY").reveal() == "updated-after-rotation"
    fresh.close()


def test_a_running_store_survives_a_master_then_data_rotation_elsewhere(filled, settings):
    """The server keeps working after `keys rotate --master` and then `keys rotate` in a CLI."""
    cli = Store.open(settings)
    cli.rotate_master_key()
    cli.rotate_data_key()
    cli.close()
    assert _readable(filled)  # re-reads the ring under the new master key from master.key
    filled.secrets.create("user:alice", "AFTER_BOTH", "after-both-rotations")
    fresh = Store.open(settings)
    assert fresh.secrets.reveal("user:alice", "AFTER_BOTH").reveal() == "after-both-rotations"
    fresh.close()


# master key --------------------------------------------------------------------


def test_rotate_master_key(filled, settings):
    old_file = settings.key_path.read_bytes()
    wrapped_before = _ring_rows(filled)
    where = filled.rotate_master_key()
    assert where == str(settings.key_path) == filled.key_source
    assert settings.key_path.read_bytes() != old_file
    assert settings.key_path.stat().st_mode & 0o777 == 0o600
    assert not masterkey.pending_path(settings.key_path).exists()
    assert [r[0] for r in _ring_rows(filled)] == [r[0] for r in wrapped_before]
    assert _ring_rows(filled) != wrapped_before
    filled.close()
    reopened = Store.open(settings)
    assert _readable(reopened)
    try:
        with pytest.raises(MasterKeyError):  # the old key no longer opens anything
            KeyRing(reopened.db, masterkey.decode(old_file.decode(), source="old"))
    finally:
        reopened.close()


def test_crash_after_writing_the_new_key_before_rewrap(filled, settings):
    """Step 1 done (master.key.new on disk), step 2 never committed."""
    pending = masterkey.pending_path(settings.key_path)
    masterkey.write_key_file(pending, masterkey.generate())
    old_file = settings.key_path.read_bytes()
    filled.close()
    reopened = Store.open(settings)
    assert reopened.key_source == str(settings.key_path)
    assert settings.key_path.read_bytes() == old_file
    assert not pending.exists()  # the never-used key is cleaned up
    assert _readable(reopened)
    reopened.close()


def test_failed_rewrap_leaves_the_old_key_in_charge(filled, settings, monkeypatch):
    old_file = settings.key_path.read_bytes()
    ring_before = _ring_rows(filled)

    def broken_rewrap(self, new_key):
        with self._db.transaction() as conn:
            conn.execute("UPDATE keyring SET wrapped = ?", (b"\0",))
            raise OSError("crash inside the rewrap transaction")

    monkeypatch.setattr(KeyRing, "rewrap", broken_rewrap)
    with pytest.raises(OSError):
        filled.rotate_master_key()
    monkeypatch.undo()
    assert _ring_rows(filled) == ring_before
    assert settings.key_path.read_bytes() == old_file
    filled.close()
    reopened = Store.open(settings)
    assert not masterkey.pending_path(settings.key_path).exists()
    assert _readable(reopened)
    reopened.close()


def test_crash_after_rewrap_before_the_rename(filled, settings, monkeypatch):
    """Step 2 committed, step 3 (rename over master.key) never happened."""
    import store.store as store_module

    real_replace = os.replace

    def crash(src, dst):
        if str(dst) == str(settings.key_path):
            raise KeyboardInterrupt("killed before rename")
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        filled.rotate_master_key()
    monkeypatch.undo()
    pending = masterkey.pending_path(settings.key_path)
    assert pending.exists()
    new_key = pending.read_bytes()
    filled.close()
    reopened = Store.open(settings)  # the old key fails, the pending one opens and is moved into place
    assert reopened.key_source == str(settings.key_path)
    assert settings.key_path.read_bytes() == new_key
    assert settings.key_path.stat().st_mode & 0o777 == 0o600
    assert not pending.exists()
    assert _readable(reopened)
    reopened.close()
    again = Store.open(settings)
    assert _readable(again)
    again.close()


def test_master_rotation_with_env_key_leaves_the_new_key_for_the_operator(filled, settings, monkeypatch):
    key = settings.key_path.read_text().strip()
    filled.close()
    settings.key_path.unlink()
    monkeypatch.setenv("LOGIC_MASTER_KEY", key)
    env_store = Store.open(Settings())
    where = env_store.rotate_master_key()
    pending = masterkey.pending_path(settings.key_path)
    assert where == str(pending)
    assert pending.stat().st_mode & 0o777 == 0o600
    # Until the operator moves it, the old env key fails and the pending file opens the ring.
    with pytest.raises(MasterKeyError, match="still wrapped by the key in"):
        env_store.rotate_master_key()  # overwriting it would risk every secret
    assert pending.read_text().strip() != key
    env_store.close()
    in_between = Store.open(Settings())
    assert in_between.key_source == str(pending)
    assert _readable(in_between)
    in_between.close()
    monkeypatch.setenv("LOGIC_MASTER_KEY", pending.read_text().strip())
    pending.unlink()
    done = Store.open(Settings())
    assert done.key_source == "LOGIC_MASTER_KEY"
    assert _readable(done)
    done.close()


def test_wrong_key_never_decrypts_garbage(filled, settings):
    filled.close()
    os.chmod(settings.key_path, 0o600)
    masterkey.write_key_file(settings.key_path, masterkey.generate())
    with pytest.raises(MasterKeyError, match="does not match"):
        Store.open(settings)


# kept versions (issue 13) ------------------------------------------------------


def _version_blobs(store):
    return store.db.all("SELECT secret_id, version, CAST(ciphertext AS BLOB) AS blob FROM secret_versions ORDER BY id")


@pytest.fixture
def versioned(filled):
    filled.secrets.update("user:alice", "API_KEY", "rotation-value-one-b")
    filled.secrets.update("user:alice", "API_KEY", "rotation-value-one-c")
    filled.secrets.update("org:acme", "API_KEY", "rotation-value-three-b")
    return filled


def test_rotation_reencrypts_every_kept_version(versioned, settings):
    before = [bytes(r["blob"]) for r in _version_blobs(versioned)]
    assert len(before) == 3
    key_id, count = versioned.rotate_data_key()
    assert count == len(VALUES)  # secrets, not versions
    after = _version_blobs(versioned)
    assert all(versioned.ring.key_id_of(r["blob"]) == key_id for r in after)
    assert not set(before) & {bytes(r["blob"]) for r in after}
    versioned.close()
    reopened = Store.open(settings)  # the old data key is gone: the versions must open under the new one
    reopened.secrets.restore("user:alice", "API_KEY", 1)
    assert reopened.secrets.reveal("user:alice", "API_KEY").reveal() == "rotation-value-one"
    reopened.secrets.restore("org:acme", "API_KEY", 1)
    assert reopened.secrets.reveal("org:acme", "API_KEY").reveal() == "rotation-value-three"
    reopened.close()


def test_versions_restore_after_a_master_then_data_rotation(versioned, settings):
    versioned.rotate_master_key()
    versioned.rotate_data_key()
    versioned.close()
    reopened = Store.open(settings)
    reopened.secrets.restore("user:alice", "API_KEY", 2)
    assert reopened.secrets.reveal("user:alice", "API_KEY").reveal() == "rotation-value-one-b"
    reopened.close()


def test_rotation_stops_at_a_tampered_version_and_changes_nothing(versioned):
    with versioned.db.transaction() as conn:
        blob = bytearray(conn.execute("SELECT ciphertext FROM secret_versions WHERE version = 2").fetchone()[0])
        blob[-2] ^= 0x01
        conn.execute("UPDATE secret_versions SET ciphertext = ? WHERE version = 2", (bytes(blob),))
    ring_before, texts_before = _ring_rows(versioned), _ciphertexts(versioned)
    versions_before = [tuple(r) for r in _version_blobs(versioned)]
    with pytest.raises(DecryptionError, match="version 2 of secret API_KEY of user:alice cannot be decrypted"):
        versioned.rotate_data_key()
    assert _ring_rows(versioned) == ring_before and _ciphertexts(versioned) == texts_before
    assert [tuple(r) for r in _version_blobs(versioned)] == versions_before
    versioned.secrets.restore("user:alice", "API_KEY", 1)  # the others still open under the kept key
    assert versioned.secrets.reveal("user:alice", "API_KEY").reveal() == "rotation-value-one"
