"""Everything logic-runtime persists: database, key ring, secrets, identities.

`store` never imports `runtime`. Names load lazily, so a worker that only
needs `store.errors` does not import the database layer.
"""

from importlib import import_module

_EXPORTS = {
    "Access": "secrets", "SecretInfo": "secrets", "LogicError": "errors", "MASK": "sensitive",
    "Sensitive": "sensitive", "Settings": "settings", "InitResult": "store", "Store": "store", "User": "identity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'store' has no attribute {name!r}")
