"""The one service layer: the CLI, the HTTP API and the console all call this.

Every method takes the acting user and, where it applies, an organization;
it resolves the owner, checks membership, and calls the store. Interfaces
never write SQL and never re-implement a rule.
"""

from __future__ import annotations

from store import Store
from store.errors import PermissionDenied
from store.identity import User, org_owner
from store.secrets import Access, SecretInfo
from store.settings import Settings


class Service:
    def __init__(self, store: Store):
        self.store = store
        self.settings: Settings = store.settings

    @classmethod
    def open(cls, settings: Settings) -> "Service":
        return cls(Store.open(settings))

    def close(self) -> None:
        self.store.close()

    # who acts, on whose behalf ---------------------------------------------------

    def actor(self, name: str | None = None) -> User:
        """The user a local command acts as: `name`, else the admin made by `logic init`."""
        identity = self.store.identity
        return identity.user(name) if name else identity.first_admin()

    def authenticate(self, token: str | None) -> User:
        return self.store.identity.authenticate(token)

    def owner_for(self, actor: User, org: str | None = None) -> str:
        if org is None:
            return actor.owner
        return self.store.identity.require_member(org, actor)

    # secrets -----------------------------------------------------------------

    def create_secret(self, actor: User, name: str, value: object, org: str | None = None) -> SecretInfo:
        return self.store.secrets.create(self.owner_for(actor, org), name, value)

    def update_secret(self, actor: User, name: str, value: object, org: str | None = None) -> SecretInfo:
        return self.store.secrets.update(self.owner_for(actor, org), name, value)

    def delete_secret(self, actor: User, name: str, org: str | None = None) -> None:
        self.store.secrets.delete(self.owner_for(actor, org), name)

    def get_secret(self, actor: User, name: str, org: str | None = None) -> SecretInfo:
        return self.store.secrets.info(self.owner_for(actor, org), name)

    def list_secrets(self, actor: User, org: str | None = None) -> list[SecretInfo]:
        return self.store.secrets.list(self.owner_for(actor, org))

    def audit(self, actor: User, secret: str | None = None, org: str | None = None,
              limit: int = 1000) -> list[Access]:
        owner = self.owner_for(actor, org)
        if secret is not None:
            self.store.secrets.info(owner, secret)  # 404 for an unknown name
        return self.store.secrets.audit(owner, secret, limit=limit)

    # users, organizations, tokens --------------------------------------------

    def create_user(self, actor: User, name: str, *, admin: bool = False) -> User:
        if not actor.is_admin:
            raise PermissionDenied("only an admin can create users")
        return self.store.identity.create_user(name, is_admin=admin)

    def create_org(self, actor: User, name: str) -> None:
        self.store.identity.create_org(name, actor)

    def add_member(self, actor: User, org: str, user: str) -> None:
        self.store.identity.add_member(org, user, actor)

    def create_token(self, actor: User, for_user: str | None = None, label: str | None = None) -> str:
        user = actor
        if for_user and for_user != actor.name:
            if not actor.is_admin:
                raise PermissionDenied("only an admin can create tokens for another user")
            user = self.store.identity.user(for_user)
        return self.store.identity.create_token(user, label)

    # keys --------------------------------------------------------------------

    def rotate_keys(self, actor: User, *, master: bool = False) -> dict:
        if not actor.is_admin:
            raise PermissionDenied("only an admin can rotate keys")
        if master:
            return {"master_key": self.store.rotate_master_key()}
        key_id, count = self.store.rotate_data_key()
        return {"data_key_id": key_id, "secrets_reencrypted": count}


__all__ = ["Service", "org_owner"]
