"""Users, organizations, memberships and API tokens.

An owner of secrets, functions and integrations is written as a key:
`user:<name>` for a user's sandbox, `org:<name>` for an organization.
Tokens are random; only their SHA-256 is stored, and lookups compare in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random
from dataclasses import dataclass, field
from typing import Any, cast

from .backend import INTEGRITY_ERRORS, Backend, check_text
from .clock import now_iso
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthorized

ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,38}")
TOKEN_PREFIX = "lgc_"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool
    # From where this user acts, for the change audit: "cli" (a local command), "token:ID"
    # (an API token), "console:TOKEN_ID" (a console session signed in with that token).
    via: str = field(default="cli", compare=False)

    @property
    def owner(self) -> str:
        return f"user:{self.name}"


def check_account_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid {what} name {name!r}: use 1-39 lower-case letters, digits, - or _, "
            "starting with a letter or digit"
        )
    return name


def org_owner(org: str) -> str:
    return f"org:{org}"


def owner_label(owner: str) -> str:
    kind, _, name = owner.partition(":")
    return f"organization {name}" if kind == "org" else f"{name}'s sandbox"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Identity:
    """IdentityRepository on SQLite: users, organizations, hashed API tokens."""

    def __init__(self, db: Backend):
        self.db = db

    # users -------------------------------------------------------------------

    def create_user(self, name: str, *, is_admin: bool = False) -> User:
        check_account_name(name, "user")
        try:
            with self.db.transaction() as conn:
                uid = conn.execute(
                    "INSERT INTO users (name, is_admin, created_at) VALUES (?, ?, ?) RETURNING id",
                    (name, int(is_admin), now_iso()),
                ).fetchone()[0]
        except INTEGRITY_ERRORS:
            raise Conflict(f"user {name} already exists") from None
        return User(cast(int, uid), name, is_admin)

    def user(self, name: str) -> User:
        row = self.db.one("SELECT id, name, is_admin FROM users WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"user {name} does not exist")
        return User(row[0], row[1], bool(row[2]))

    def users(self) -> list[User]:
        return [User(r[0], r[1], bool(r[2])) for r in self.db.all("SELECT id, name, is_admin FROM users ORDER BY name")]

    def first_admin(self) -> User:
        admin = self.first_admin_or_none()
        if admin is None:
            raise NotFound("no admin user: run `logic init`")
        return admin

    def first_admin_or_none(self) -> User | None:
        row = self.db.one("SELECT id, name, is_admin FROM users WHERE is_admin = 1 ORDER BY id LIMIT 1")
        return None if row is None else User(row[0], row[1], True)

    # organizations -----------------------------------------------------------

    def create_org(self, name: str, founder: User) -> None:
        check_account_name(name, "organization")
        try:
            with self.db.transaction() as conn:
                oid = conn.execute(
                    "INSERT INTO orgs (name, created_at) VALUES (?, ?) RETURNING id", (name, now_iso())
                ).fetchone()[0]
                conn.execute(
                    "INSERT INTO memberships (org_id, user_id, created_at) VALUES (?, ?, ?)",
                    (oid, founder.id, now_iso()),
                )
        except INTEGRITY_ERRORS:
            raise Conflict(f"organization {name} already exists") from None

    def _org_id(self, name: str) -> int:
        row = self.db.one("SELECT id FROM orgs WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"organization {name} does not exist")
        return cast(int, row[0])

    def add_member(self, org: str, user_name: str, actor: User) -> None:
        self.require_member(org, actor)
        user = self.user(user_name)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO memberships (org_id, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (self._org_id(org), user.id, now_iso()),
            )

    def members(self, org: str) -> list[str]:
        return [
            r[0]
            for r in self.db.all(
                "SELECT u.name FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = ? ORDER BY u.name",
                (self._org_id(org),),
            )
        ]

    def orgs_of(self, user: User) -> list[str]:
        return [
            r[0]
            for r in self.db.all(
                "SELECT o.name FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ? ORDER BY o.name",
                (user.id,),
            )
        ]

    def require_member(self, org: str, user: User) -> str:
        org_id = self._org_id(org)
        if self.db.one("SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?", (org_id, user.id)) is None:
            raise PermissionDenied(f"user {user.name} is not a member of organization {org}")
        return org_owner(org)

    # tokens ------------------------------------------------------------------

    def create_token(self, user: User, label: str | None = None) -> str:
        if label is not None:
            check_text(label, "token label")
        token = TOKEN_PREFIX + _random.token_urlsafe(32)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO tokens (user_id, token_hash, label, created_at) VALUES (?, ?, ?, ?)",
                (user.id, hash_token(token), label, now_iso()),
            )
        return token

    def tokens(self, user: User) -> list[dict[str, Any]]:
        """The user's tokens: id, label, created_at (never the token or its hash)."""
        return [
            dict(r)
            for r in self.db.all("SELECT id, label, created_at FROM tokens WHERE user_id = ? ORDER BY id", (user.id,))
        ]

    def revoke_token(self, user: User, token_id: int) -> None:
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM tokens WHERE id = ? AND user_id = ?", (token_id, user.id)).rowcount == 0:
                raise NotFound(f"token {token_id} does not exist for user {user.name}")

    def authenticate(self, token: str | None) -> User:
        return self.token_holder(token)[1]

    def token_holder(self, token: str | None) -> tuple[int, User]:
        """(the token's id, its user); Unauthorized for a missing or unknown token."""
        if not token:
            raise Unauthorized("missing API token: send `Authorization: Bearer TOKEN`")
        digest = hash_token(token)
        row = self.db.one(
            "SELECT t.token_hash, t.id, u.id, u.name, u.is_admin FROM tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ?",
            (digest,),
        )
        # The lookup is by hash (an index), and the final check is constant-time.
        if row is None or not hmac.compare_digest(row[0], digest):
            raise Unauthorized("invalid API token")
        return row[1], User(row[2], row[3], bool(row[4]), via=f"token:{row[1]}")
