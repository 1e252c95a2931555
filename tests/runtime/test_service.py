"""The service layer (secrets, identities, keys): owners, membership and permissions."""

from __future__ import annotations

import pytest

from runtime.service import Service
from store.errors import Conflict, NotFound, PermissionDenied, Unauthorized
from store.secrets import Access
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


VALUE = "service-test-value-5e2b"


@pytest.fixture
def service(store):
    svc = Service(store)
    yield svc


@pytest.fixture
def team(service):
    admin = service.actor()
    alice = service.create_user(admin, "alice")
    bob = service.create_user(admin, "bob")
    service.create_org(alice, "acme")
    return admin, alice, bob


def test_actor_defaults_to_the_init_admin(service, admin):
    assert service.actor() == admin
    assert service.actor(admin.name) == admin
    with pytest.raises(NotFound, match="^user ghost does not exist$"):
        service.actor("ghost")


def test_sandbox_and_org_owners(service, team):
    admin, alice, bob = team
    service.create_secret(alice, "API_KEY", VALUE)
    service.create_secret(alice, "API_KEY", "org-value", org="acme")
    service.create_secret(bob, "API_KEY", "bob-value")
    store = service.store
    assert store.secrets.reveal("user:alice", "API_KEY").reveal() == VALUE
    assert store.secrets.reveal("org:acme", "API_KEY").reveal() == "org-value"
    assert store.secrets.reveal("user:bob", "API_KEY").reveal() == "bob-value"
    assert [i.name for i in service.list_secrets(alice, "acme")] == ["API_KEY"]
    assert service.list_secrets(admin) == []


def test_non_members_cannot_touch_org_secrets(service, team, db_rows):
    admin, alice, bob = team
    service.create_secret(alice, "API_KEY", VALUE, org="acme")
    before = db_rows()
    calls = [
        lambda: service.list_secrets(bob, "acme"),
        lambda: service.get_secret(bob, "API_KEY", "acme"),
        lambda: service.create_secret(bob, "NEW", VALUE, "acme"),
        lambda: service.update_secret(bob, "API_KEY", "hijack", "acme"),
        lambda: service.delete_secret(bob, "API_KEY", "acme"),
        lambda: service.audit(bob, None, "acme"),
        lambda: service.add_member(bob, "acme", "bob"),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied, match="^user bob is not a member of organization acme$"):
            call()
    with pytest.raises(NotFound, match="^organization nope does not exist$"):
        service.list_secrets(alice, "nope")
    assert db_rows() == before
    service.add_member(alice, "acme", "bob")
    assert [i.name for i in service.list_secrets(bob, "acme")] == ["API_KEY"]


def test_admin_only_operations(service, team, db_rows):
    admin, alice, bob = team
    before = db_rows()
    with pytest.raises(PermissionDenied, match="^only an admin can create users$"):
        service.create_user(alice, "carol")
    with pytest.raises(PermissionDenied, match="^only an admin can rotate keys$"):
        service.rotate_keys(alice)
    with pytest.raises(PermissionDenied, match="^only an admin can rotate keys$"):
        service.rotate_keys(alice, master=True)
    with pytest.raises(PermissionDenied, match="^only an admin can manage another user's tokens$"):
        service.create_token(alice, "bob")
    assert db_rows() == before


def test_tokens(service, team):
    admin, alice, bob = team
    own = service.create_token(alice, label="laptop")
    assert service.authenticate(own) == alice
    for_bob = service.create_token(admin, "bob")
    assert service.authenticate(for_bob) == bob
    with pytest.raises(Unauthorized):
        service.authenticate("lgc_forged")


def test_rotate_keys(service, team):
    admin, alice, _ = team
    service.create_secret(alice, "API_KEY", VALUE)
    result = service.rotate_keys(admin)
    assert result == {"data_key_id": service.store.ring.active_id, "secrets_reencrypted": 1}
    assert service.rotate_keys(admin, master=True) == {"master_key": str(service.settings.key_path)}
    assert service.store.secrets.reveal("user:alice", "API_KEY").reveal() == VALUE


def test_audit(service, team):
    admin, alice, _ = team
    service.create_secret(alice, "API_KEY", VALUE)
    service.store.secrets.record_access(
        [Access("user:alice", "API_KEY", "logic_function", "f1", "fn", "r1", "2026-01-01T00:00:00.000000Z")]
    )
    assert [a.run_id for a in service.audit(alice, "API_KEY")] == ["r1"]
    assert service.audit(admin) == []
    with pytest.raises(NotFound, match="^secret NOPE does not exist$"):
        service.audit(alice, "NOPE")


def test_duplicate_and_used(service, team):
    _, alice, _ = team
    service.create_secret(alice, "API_KEY", VALUE)
    with pytest.raises(Conflict, match="already exists"):
        service.create_secret(alice, "API_KEY", VALUE)
    service.store.secrets.set_usages("user:alice", "logic_function", "f1", "reformat", ["API_KEY"])
    with pytest.raises(Conflict, match="in use by function reformat"):
        service.delete_secret(alice, "API_KEY")
    assert service.get_secret(alice, "API_KEY").usage_count == 1


def test_nothing_the_service_returns_shows_a_value(service, team):
    admin, alice, _ = team
    created = service.create_secret(alice, "API_KEY", VALUE)
    updated = service.update_secret(alice, "API_KEY", VALUE + "-2")
    service.store.secrets.record_access(
        [Access("user:alice", "API_KEY", "logic_function", "f1", "fn", "r1", "2026-01-01T00:00:00.000000Z")]
    )
    objects = [
        created,
        updated,
        service.get_secret(alice, "API_KEY"),
        service.list_secrets(alice),
        service.audit(alice),
        service.store.secrets.reveal("user:alice", "API_KEY"),
        service,
        service.store,
        service.store.ring,
        service.store.secrets,
        alice,
        service.settings,
    ]
    for obj in objects:
        for text in (repr(obj), str(obj)):
            assert VALUE not in text, type(obj)
