"""The secrets broker: the parent's side of `secrets.NAME` for one run.

The worker asks for a name; the broker checks it against the function's
declared list and owner (threat: a compromised worker asking for anything),
decrypts the current value, notes the access for the audit, and keeps the
values it handed out so the redactor can mask exactly those.
"""

from __future__ import annotations

from store.clock import now_iso
from store.errors import DecryptionError, NotFound
from store.secrets import Access, SecretStore
from store.sensitive import Sensitive

from .sandbox.executor import SecretAccessError


class SecretsBroker:
    def __init__(self, secrets: SecretStore, *, owner: str, declared: tuple[str, ...],
                 consumer_kind: str, consumer_id: str, consumer_name: str, run_id: str | None):
        self._secrets = secrets
        self.owner = owner
        self.declared = declared
        self._consumer = (consumer_kind, consumer_id, consumer_name)
        self.run_id = run_id
        self.accesses: list[Access] = []
        self.values: list[Sensitive] = []

    def read(self, name: str) -> str:
        if name not in self.declared:
            listed = ", ".join(self.declared) or "none"
            raise SecretAccessError(f"secret {name!r} is not declared in this function's manifest; declared: {listed}")
        try:
            value = self._secrets.reveal(self.owner, name)
        except NotFound:
            raise SecretAccessError(f"secret {name} no longer exists") from None
        except DecryptionError:
            raise SecretAccessError(f"secret {name} cannot be read; the operator has been told") from None
        kind, cid, cname = self._consumer
        self.accesses.append(Access(self.owner, name, kind, cid, cname, self.run_id, now_iso()))
        if value not in self.values:
            self.values.append(value)
        return value.reveal()

    @property
    def names_read(self) -> list[str]:
        return list(dict.fromkeys(a.secret_name for a in self.accesses))

    def plain_values(self) -> list[str]:
        return [v.reveal() for v in self.values]
