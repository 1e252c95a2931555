"""Everything logic-runtime persists: database, key ring, secrets, identities.

`store` never imports `runtime`. Names load lazily, so a worker that only
needs `store.errors` does not import the database layer.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lazy names below, as the type checker should see them
    from .changes import Change as Change
    from .changes import Verification as Verification
    from .errors import LogicError as LogicError
    from .identity import User as User
    from .secrets import Access as Access
    from .secrets import SecretInfo as SecretInfo
    from .sensitive import MASK as MASK
    from .sensitive import Sensitive as Sensitive
    from .settings import Settings as Settings
    from .store import InitResult as InitResult
    from .store import Store as Store

_EXPORTS = {
    "Access": "secrets",
    "Change": "changes",
    "Verification": "changes",
    "SecretInfo": "secrets",
    "LogicError": "errors",
    "MASK": "sensitive",
    "Sensitive": "sensitive",
    "Settings": "settings",
    "InitResult": "store",
    "Store": "store",
    "User": "identity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'store' has no attribute {name!r}")
