"""Where the master key comes from: the key file, LOGIC_MASTER_KEY, and file modes."""

from __future__ import annotations

import base64
import threading

import pytest

from store import Settings, Store, masterkey
from store.errors import MasterKeyError

VALUE = "masterkey-test-value-42"


def test_decode_accepts_base64_of_32_bytes():
    key = masterkey.generate()
    assert len(key) == 32
    assert masterkey.decode(masterkey.encode(key) + "\n", source="x") == key


@pytest.mark.parametrize(
    "text, message",
    [
        ("not base64!!", "the master key in SRC is not valid base64"),
        (base64.b64encode(b"k" * 16).decode(), "the master key in SRC must be 32 bytes, not 16"),
        (base64.b64encode(b"k" * 33).decode(), "must be 32 bytes, not 33"),
        ("", "must be 32 bytes, not 0"),
    ],
)
def test_decode_refuses_bad_keys_without_echoing_them(text, message):
    with pytest.raises(MasterKeyError) as info:
        masterkey.decode(text, source="SRC")
    assert message in str(info.value)
    if text:
        assert text not in str(info.value)


def test_key_file_is_written_0600_atomically(tmp_path):
    path = tmp_path / "k"
    key = masterkey.generate()
    masterkey.write_key_file(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert masterkey.decode(path.read_text(), source="k") == key
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary file left


def test_a_first_key_file_never_replaces_one_already_there(tmp_path):
    path = tmp_path / "k"
    first, second = masterkey.generate(), masterkey.generate()
    assert masterkey.write_key_file(path, first, replace=False)
    assert not masterkey.write_key_file(path, second, replace=False)
    assert masterkey.decode(path.read_text(), source="k") == first
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_two_inits_racing_on_one_home_end_with_the_key_the_database_was_made_with(settings, monkeypatch):
    """Both find no key file; then one writes its key and makes the database, and only then
    does the other write its key: the database must open with the key file left behind."""
    both_looked = threading.Barrier(2, timeout=10)
    first_done = threading.Event()
    turn = iter(["first", "second"])
    write = masterkey.write_key_file

    def in_order(path, key, **kwargs):
        both_looked.wait()  # neither found a key file
        if next(turn) == "second":
            assert first_done.wait(10)
        return write(path, key, **kwargs)

    monkeypatch.setattr(masterkey, "write_key_file", in_order)
    results: list[object] = []

    def init() -> None:
        try:
            store, result = Store.initialize(settings)
            store.secrets.create(f"user:{threading.get_ident()}", "RACED", VALUE)
            store.close()
            results.append(result.created)
        except BaseException as exc:  # reported below
            results.append(exc)
        finally:
            first_done.set()

    threads = [threading.Thread(target=init) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(map(repr, results)) == ["False", "True"]  # one made it; the other found it made
    store = Store.open(settings)  # with the one key file: every secret of both decrypts
    try:
        values = [store.secrets.reveal(r["owner"], "RACED") for r in store.db.all("SELECT owner FROM secrets")]
        assert len(values) == 2 and all(v.reveal() == VALUE for v in values)
    finally:
        store.close()


def test_no_key_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(
        MasterKeyError,
        match=r"no master key: set LOGIC_MASTER_KEY or create .*master.key "
        r"with `logic init`",
    ):
        masterkey.candidates(None, tmp_path / "master.key")


def test_init_makes_private_files(store, settings):
    assert settings.home.stat().st_mode & 0o777 == 0o700
    assert settings.key_path.stat().st_mode & 0o777 == 0o600
    store.secrets.create("user:x", "MODE_CHECK", VALUE)  # forces WAL/SHM files into being
    database_files = (
        settings.db_path,
        settings.db_path.with_name("logic.db-wal"),
        settings.db_path.with_name("logic.db-shm"),
    )
    for path in database_files if settings.database_url is None else ():
        assert path.exists(), path
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_init_makes_a_private_home_even_with_a_loose_umask(settings):
    import os

    old = os.umask(0o022)
    try:
        store, _ = Store.initialize(settings)
    finally:
        os.umask(old)
    store.close()
    assert settings.home.stat().st_mode & 0o777 == 0o700
    assert settings.key_path.stat().st_mode & 0o777 == 0o600
    if settings.database_url is None:
        assert settings.db_path.stat().st_mode & 0o777 == 0o600


# LOGIC_MASTER_KEY ----------------------------------------------------------------


def test_env_key_is_used_and_no_key_file_is_written(logic_home, monkeypatch):
    key = masterkey.encode(masterkey.generate())
    monkeypatch.setenv("LOGIC_MASTER_KEY", key)
    store, result = Store.initialize(Settings())
    assert result.key_source == "LOGIC_MASTER_KEY"
    store.secrets.create("user:a", "ENV_KEY", VALUE)
    store.close()
    assert not (logic_home / "master.key").exists()
    reopened = Store.open(Settings())
    assert reopened.secrets.reveal("user:a", "ENV_KEY").reveal() == VALUE
    assert reopened.key_source == "LOGIC_MASTER_KEY"
    reopened.close()


def test_env_key_takes_precedence_over_the_key_file(store, settings, monkeypatch):
    store.close()
    monkeypatch.setenv("LOGIC_MASTER_KEY", masterkey.encode(masterkey.generate()))
    with pytest.raises(MasterKeyError, match="^the master key does not match this database$"):
        Store.open(Settings())


@pytest.mark.parametrize(
    "env, message",
    [
        ("%%%not-base64%%%", "the master key in LOGIC_MASTER_KEY is not valid base64"),
        (base64.b64encode(b"short").decode(), "the master key in LOGIC_MASTER_KEY must be 32 bytes, not 5"),
    ],
)
def test_bad_env_key_is_a_clear_error(store, monkeypatch, env, message):
    store.close()
    monkeypatch.setenv("LOGIC_MASTER_KEY", env)
    with pytest.raises(MasterKeyError) as info:
        Store.open(Settings())
    assert str(info.value) == message


def test_wrong_or_missing_key_file(store, settings):
    store.close()
    masterkey.write_key_file(settings.key_path, masterkey.generate())
    with pytest.raises(MasterKeyError, match="^the master key does not match this database$"):
        Store.open(settings)
    settings.key_path.unlink()
    with pytest.raises(MasterKeyError, match="^no master key"):
        Store.open(settings)
