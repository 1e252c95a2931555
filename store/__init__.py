"""Everything logic-runtime persists: database, key ring, secrets, identities.

`store` never imports `runtime`.
"""

from .errors import LogicError
from .identity import User
from .secrets import Access, SecretInfo
from .sensitive import MASK, Sensitive
from .settings import Settings
from .store import InitResult, Store

__all__ = ["Access", "InitResult", "LogicError", "MASK", "SecretInfo", "Sensitive", "Settings", "Store", "User"]
