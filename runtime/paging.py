"""Cursor paging for the long listings (run records, webhook logs, the access audit).

A listing is newest first; its next page starts after the last item returned. The
cursor is that item's sort key, opaque to clients (base64url of a JSON list), so a
page is stable while new items arrive on top. A cursor that does not parse is a clear
422, never a 500 and never a silent first page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from store.errors import InvalidInput

T = TypeVar("T")


def encode(*key: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str, *types: type) -> tuple[Any, ...]:
    """The key in `cursor`, each part of the given type; InvalidInput for anything else."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        key = None
    if not isinstance(key, list) or len(key) != len(types):
        key = None
    if key is None or not all(type(v) is t for v, t in zip(key, types, strict=True)):
        raise InvalidInput("cursor: not a cursor from this listing (use the next_cursor of the page before)")
    return tuple(key)


def next_cursor(items: Sequence[T], limit: int, key: Callable[[T], tuple[str | int, ...]]) -> str | None:
    """The cursor of the page after `items`, or None when this page was the last one."""
    if len(items) < limit or not items:
        return None
    return encode(*key(items[-1]))


def run_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["started_at"], record["id"]


def log_key(entry: dict[str, Any]) -> tuple[int]:
    return (entry["id"],)


def access_key(access: Any) -> tuple[str, int]:
    """An audit row's key (store.secrets.Access as listed: its id is set)."""
    return access.at, access.id
