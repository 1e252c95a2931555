"""Store.initialize / Store.open: the data home as `logic init` leaves it."""

from __future__ import annotations

import pytest

from store import Settings, Store
from store.errors import NotInitialized, SchemaTooNew
from store.identity import Identity
from store.migrations import MIGRATIONS


def test_initialize_creates_everything(settings):
    store, result = Store.initialize(settings)
    assert result.created and result.token.startswith("lgc_")
    assert result.admin.is_admin
    assert result.key_source == str(settings.key_path)
    assert store.db.schema_version == len(MIGRATIONS)
    assert len(store.ring.key_ids) == 1
    assert store.identity.authenticate(result.token) == result.admin
    assert result.token not in repr(result)  # a credential stays out of reprs and logs
    store.close()


def test_initialize_twice_changes_nothing(settings, db_rows):
    first, result = Store.initialize(settings)
    first.close()
    key = settings.key_path.read_bytes()
    before = db_rows()
    again, second = Store.initialize(settings)
    again.close()
    assert not second.created and second.token is None
    assert second.admin == result.admin
    assert settings.key_path.read_bytes() == key
    assert db_rows() == before


def test_interrupted_init_is_finished_by_the_next_init(settings, monkeypatch):
    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed during init")

    monkeypatch.setattr(Identity, "create_token", crash)
    with pytest.raises(KeyboardInterrupt):
        Store.initialize(settings)
    monkeypatch.undo()
    if settings.database_url is None:
        assert settings.db_path.exists()
    store, result = Store.initialize(settings)
    assert result.created and result.token
    assert len(store.ring.key_ids) == 1
    assert len(store.identity.users()) == 1
    store.secrets.create("user:x", "AFTER_CRASH", "value-after-crash")
    store.close()
    reopened = Store.open(settings)
    assert reopened.secrets.reveal("user:x", "AFTER_CRASH").reveal() == "value-after-crash"
    reopened.close()


def test_open_before_init(settings):
    with pytest.raises(NotInitialized, match="run `logic init` first"):
        Store.open(settings)
    assert not settings.home.exists()


def test_open_refuses_a_newer_schema(store, settings):
    if store.db.dialect == "sqlite":
        store.db.execute("PRAGMA user_version = 9999")
    else:
        store.db.execute("UPDATE logic_schema SET version = 9999")
    store.close()
    with pytest.raises(SchemaTooNew):
        Store.open(settings)
    with pytest.raises(SchemaTooNew):
        Store.initialize(settings)


def test_settings_come_from_the_environment(logic_home, monkeypatch):
    monkeypatch.setenv("LOGIC_SECRET_VALUE_MAX_BYTES", "10")
    settings = Settings()
    assert settings.home == logic_home and settings.secret_value_max_bytes == 10
    store, _ = Store.initialize(settings)
    assert store.secrets.max_value_bytes == 10
    store.close()
