"""The secrets broker: the parent's side of `secrets.NAME` for one run.

The worker asks for a name; the broker checks it against the function's
declared list and owner (threat: a compromised worker asking for anything),
decrypts the current value, notes the access for the audit, and keeps the
values it handed out so the redactor can mask exactly those. It is the one
trusted check of the declared list: the sandbox checks it too, but inside
the worker, which a compromised worker would skip. A value that fails to
decrypt is logged for the operator (owner and name, never a value).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from runtime.execution.redactor import masking_cost
from runtime.sandbox.executor import SecretAccessError as SecretAccessError  # raised by read(): re-exported
from store.clock import now_iso
from store.errors import DecryptionError, NotFound
from store.repositories import SecretRepository
from store.secrets import Access
from store.sensitive import Sensitive

log = logging.getLogger("logic.secrets")


class SecretsBroker:
    """`secrets.NAME` for one run or webhook delivery: check, decrypt, charge, note."""

    def __init__(
        self,
        secrets: SecretRepository,
        *,
        owner: str,
        declared: tuple[str, ...],
        consumer_kind: str,
        consumer_id: str,
        consumer_name: str,
        run_id: str | None,
        bytes_max: int | None = None,
        masking_max: int | None = None,
    ):
        self._secrets = secrets
        # Threat: a run reading many large secrets to make the server build (and hold)
        # huge redactors. What its distinct values may total, and what masking them may cost.
        self._bytes_max = self._bytes_left = bytes_max
        self._masking_left = masking_max
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
            log.error(
                "secret %s of %s cannot be decrypted with the key ring (restore the key, or update the secret)",
                name,
                self.owner,
            )
            raise SecretAccessError(f"secret {name} cannot be read; the operator has been told") from None
        if value not in self.values:
            self._charge(name, value)
            self.values.append(value)
        kind, cid, cname = self._consumer
        self.accesses.append(Access(self.owner, name, kind, cid, cname, self.run_id, now_iso()))
        return value.reveal()

    def _charge(self, name: str, value: Sensitive) -> None:
        """Count a value not read before against the run's limits; refuse it past them."""
        if self._bytes_left is not None:
            size = len(value.reveal().encode("utf-8"))
            if size > self._bytes_left:
                raise SecretAccessError(
                    f"secret {name} cannot be read: the secrets one run reads may total "
                    f"at most {self._bytes_max:,} bytes (use fewer or shorter secrets)"
                )
            self._bytes_left -= size
        if self._masking_left is not None:
            cost = masking_cost([value])
            if cost > self._masking_left:
                raise SecretAccessError(
                    f"secret {name} cannot be read: masking the secrets this run read would take "
                    "more memory than one run may use (use fewer secrets, or values with fewer lines)"
                )
            self._masking_left -= cost

    @property
    def names_read(self) -> list[str]:
        return list(dict.fromkeys(a.secret_name for a in self.accesses))

    def plain_values(self) -> list[str]:
        return [v.reveal() for v in self.values]


@contextmanager
def audited(secrets: SecretRepository, accesses: list[Access]) -> Iterator[None]:
    """On any failure inside, record `accesses` (a list that may still grow inside) before
    the error goes on: every secret handed out is audited, even when the run or its commit
    fails."""
    try:
        yield
    except BaseException:
        secrets.record_access(accesses)
        raise
