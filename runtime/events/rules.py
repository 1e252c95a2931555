"""Events: the rules for a name and its data (the durable bus builds on these)."""

from __future__ import annotations

from store.errors import InvalidInput, TooLarge
from store.settings import Settings


HOOK_PREFIXES = ("hook-response/", "hook-error/")


def check_event(name: object, data: object, settings: Settings, *, from_hook: bool = False) -> None:
    """`from_hook`: a webhook's response event may exceed the name limit by its `hook-...` prefix."""
    limit = settings.event_name_max_chars
    if from_hook and isinstance(name, str) and name.startswith(HOOK_PREFIXES):
        limit += len(HOOK_PREFIXES[0])
    if not isinstance(name, str) or not (1 <= len(name) <= limit):
        raise InvalidInput(f"event name must be 1-{settings.event_name_max_chars} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput("event name must not contain control characters")
    if data is None:
        return
    if not isinstance(data, str):
        raise InvalidInput("event data must be a string or null")
    size = len(data.encode("utf-8", "surrogatepass"))
    if size > settings.event_data_max_bytes:
        raise TooLarge(f"event data is {size} bytes; the limit is {settings.event_data_max_bytes} bytes")
