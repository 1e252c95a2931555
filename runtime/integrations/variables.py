"""What a webhook template's names mean for one event: predefined variables and JSON data.

Predefined, for every event (all text):

- ours: EVENT_NAME, EVENT_DATA, EVENT_PUBLISHED_AT, EVENT_SOURCE, EVENT_ID;
- Particle's: PARTICLE_EVENT_NAME, PARTICLE_EVENT_VALUE, PARTICLE_PUBLISHED_AT,
  PARTICLE_EVENT_ID, PARTICLE_EVENT_JSON (the event as JSON: name, data,
  published_at, coreid) and PARTICLE_EVENT_BASE64 (that JSON in base64), and
  the older SPARK_EVENT_NAME, SPARK_EVENT_VALUE, SPARK_PUBLISHED_AT;
- Particle's device and product variables, always empty (events here come
  from people, runs and schedules, not from devices): DEVICE_VARIABLES.

Every other name is looked up in the event data when it parses as a JSON
object or array (`{{t}}`, `{{a.b}}`, `{{c.0.d}}`, sections over its lists);
any other data gives no names. JSON nested deeper than JSON_DEPTH_MAX gives no
names either: rendering it would recurse that deep.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from runtime.integrations.templates import Namespace

DEVICE_VARIABLES = ("PARTICLE_DEVICE_ID", "SPARK_CORE_ID", "PRODUCT_ID", "PRODUCT_USER_ID", "PRODUCT_VERSION")
_FROM_EVENT = {
    "EVENT_NAME": "name",
    "EVENT_DATA": "data",
    "EVENT_PUBLISHED_AT": "published_at",
    "EVENT_SOURCE": "source",
    "EVENT_ID": "id",
    "PARTICLE_EVENT_NAME": "name",
    "PARTICLE_EVENT_VALUE": "data",
    "PARTICLE_PUBLISHED_AT": "published_at",
    "PARTICLE_EVENT_ID": "id",
    "SPARK_EVENT_NAME": "name",
    "SPARK_EVENT_VALUE": "data",
    "SPARK_PUBLISHED_AT": "published_at",
}
PREDEFINED = frozenset(_FROM_EVENT) | {"PARTICLE_EVENT_JSON", "PARTICLE_EVENT_BASE64"} | frozenset(DEVICE_VARIABLES)
JSON_DEPTH_MAX = 64


def event_variables(event: dict[str, Any]) -> dict[str, str]:
    variables = {name: _str(event.get(attr)) for name, attr in _FROM_EVENT.items()}
    variables.update(dict.fromkeys(DEVICE_VARIABLES, ""))
    whole = json.dumps(
        {
            "name": variables["EVENT_NAME"],
            "data": variables["EVENT_DATA"],
            "published_at": variables["EVENT_PUBLISHED_AT"],
            "coreid": "",
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    variables["PARTICLE_EVENT_JSON"] = whole
    variables["PARTICLE_EVENT_BASE64"] = base64.b64encode(whole.encode("utf-8", "surrogatepass")).decode("ascii")
    return variables


def event_namespace(
    event: dict[str, Any], secrets: dict[str, str] | None = None, env: dict[str, str] | None = None
) -> Namespace:
    """The names of a request's templates: the event's data and variables, the secrets read
    and the environment variables used."""
    return Namespace(
        data=json_data(event.get("data")),
        variables=event_variables(event),
        secrets=dict(secrets or {}),
        env=dict(env or {}),
    )


def default_fields(variables: dict[str, str]) -> dict[str, str]:
    """Particle's default body (form-encoded when no json, form or body is given)."""
    return {
        "event": variables["PARTICLE_EVENT_NAME"],
        "data": variables["PARTICLE_EVENT_VALUE"],
        "published_at": variables["PARTICLE_PUBLISHED_AT"],
        "coreid": variables["PARTICLE_DEVICE_ID"],
    }


def json_data(text: object) -> Any:
    """`text` decoded when it is a JSON object or array of sane depth; else {} (no names)."""
    if not isinstance(text, str) or text.lstrip()[:1] not in ("{", "["):
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if _depth_within(value, JSON_DEPTH_MAX) else {}


def _depth_within(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [c for v in level if isinstance(v, (dict, list)) for c in (v.values() if isinstance(v, dict) else v)]
        if not level:
            return True
    return False


def _str(value: object) -> str:
    return "" if value is None else str(value)
