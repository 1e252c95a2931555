"""Users, organizations, memberships and API tokens."""

from __future__ import annotations

import hashlib

import pytest

from store.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthorized
from store.identity import hash_token


@pytest.fixture
def people(store):
    ident = store.identity
    return ident, ident.create_user("alice"), ident.create_user("bob")


@pytest.mark.parametrize("name", ["", "Alice", "-x", "a" * 40, "a b", "a/b", "ünï"])
def test_bad_account_names(store, name):
    with pytest.raises(InvalidInput, match="invalid user name"):
        store.identity.create_user(name)
    with pytest.raises(InvalidInput, match="invalid organization name"):
        store.identity.create_org(name, store.identity.first_admin())
    assert store.db.one("SELECT count(*) FROM users")[0] == 1
    assert store.db.one("SELECT count(*) FROM orgs")[0] == 0


def test_users(people):
    ident, alice, bob = people
    assert (alice.owner, alice.is_admin) == ("user:alice", False)
    assert ident.user("alice") == alice
    with pytest.raises(Conflict, match="^user alice already exists$"):
        ident.create_user("alice")
    with pytest.raises(NotFound, match="^user carol does not exist$"):
        ident.user("carol")
    assert {u.name for u in ident.users()} >= {"alice", "bob"}


def test_orgs_and_members(people):
    ident, alice, bob = people
    ident.create_org("acme", alice)
    assert ident.members("acme") == ["alice"]
    assert ident.require_member("acme", alice) == "org:acme"
    with pytest.raises(PermissionDenied, match="^user bob is not a member of organization acme$"):
        ident.require_member("acme", bob)
    with pytest.raises(PermissionDenied):
        ident.add_member("acme", "bob", bob)  # a non-member cannot add anyone, not even themselves
    ident.add_member("acme", "bob", alice)
    ident.add_member("acme", "bob", alice)  # again: no change, no error
    assert ident.members("acme") == ["alice", "bob"]
    assert ident.orgs_of(bob) == ["acme"]
    with pytest.raises(Conflict, match="^organization acme already exists$"):
        ident.create_org("acme", bob)
    with pytest.raises(NotFound, match="^organization nope does not exist$"):
        ident.require_member("nope", alice)
    with pytest.raises(NotFound, match="^user carol does not exist$"):
        ident.add_member("acme", "carol", alice)


def test_tokens_are_stored_only_as_hashes(people):
    ident, alice, _ = people
    token = ident.create_token(alice, "laptop")
    assert token.startswith("lgc_") and len(token) > 40
    assert ident.authenticate(token) == alice
    rows = ident.db.all("SELECT * FROM tokens")
    assert hashlib.sha256(token.encode()).hexdigest() in [r["token_hash"] for r in rows]
    assert all(token not in str(tuple(r)) for r in rows)
    assert hash_token(token) != token


@pytest.mark.parametrize("bad", [None, "", "lgc_nope", "x" * 500, "\udcff"])
def test_authenticate_refuses(store, bad):
    with pytest.raises(Unauthorized):
        store.identity.authenticate(bad)
