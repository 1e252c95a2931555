"""Webhook templates: Mustache variables only, rendered once with chevron.

Every configurable field (url, query keys and values, header names and
values, every string and key inside `json`, form keys and values, body,
auth username and password) is a Mustache template, rendered with chevron.
A template may use variables only, `{{{NAME}}}` (as is) or `{{NAME}}` (HTML
escaped), from one flat namespace:

- a declared secret: `{{{API_KEY}}}`;
- an event variable: EVENT_NAME, EVENT_DATA, EVENT_PUBLISHED_AT,
  EVENT_SOURCE, EVENT_ID, and Particle's names for them (PARTICLE_EVENT_NAME,
  PARTICLE_EVENT_VALUE, PARTICLE_PUBLISHED_AT, PARTICLE_DEVICE_ID);
- a top-level field of the event data when it parses as a JSON object
  (strings as they are, other values as compact JSON text, null as "").

Names in secret-name syntax (`^[A-Z_][A-Z0-9_]*$`) are reserved for secrets
and event variables: such a name that is neither declared nor an event
variable is refused when the integration is created (a typo'd secret would
otherwise send an empty credential), and a JSON data field with such a name
cannot be referenced (event data must never shadow a secret).

Refused, because a template is configuration, not a program: partials
(`{{> x}}` would make chevron read x.mustache from the server's disk),
sections and inverted sections, and dotted names (chevron resolves them with
getattr on Python objects). Values are substituted once and never rendered
again, so event data that contains `{{{API_KEY}}}` is sent literally.

When an integration declares secrets, the URL's scheme and host part (up to
the first `/`, `?` or `#`) may not use event variables: otherwise whoever
publishes the event chooses where the secrets are sent.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import chevron
from chevron.tokenizer import tokenize

from store.secrets import NAME_PATTERN

EVENT_VARIABLES = {
    "EVENT_NAME": "name",
    "EVENT_DATA": "data",
    "EVENT_PUBLISHED_AT": "published_at",
    "EVENT_SOURCE": "source",
    "EVENT_ID": "id",
    "PARTICLE_EVENT_NAME": "name",
    "PARTICLE_EVENT_VALUE": "data",
    "PARTICLE_PUBLISHED_AT": "published_at",
    "PARTICLE_DEVICE_ID": "source",
}
_VARIABLE_TAGS = ("variable", "no escape")


class _NoPartials(dict):
    """Every partial is the empty template, whatever chevron asks for."""

    def __missing__(self, key: str) -> str:
        return ""


_NO_PARTIALS = _NoPartials()


@functools.lru_cache(maxsize=1024)
def _tokens(template: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(tokenize(template))
    except chevron.ChevronError as exc:
        raise ValueError("invalid template: " + " ".join(str(exc).split())) from None


def template_names(template: str) -> list[str]:
    """The variable names a template uses; ValueError for anything but variables."""
    names = []
    for tag, key in _tokens(template):
        if tag in ("literal", "set delimiter"):
            continue
        if tag == "partial":
            raise ValueError(f"partials ({{{{> {key}}}}}) are not supported")
        if tag in ("section", "inverted section", "end"):
            raise ValueError(f"sections ({{{{#{key}}}}}) are not supported: use {{{{{{NAME}}}}}} variables")
        if tag not in _VARIABLE_TAGS:
            raise ValueError(f"unsupported template tag {tag!r}")
        if key == "." or "." in key:
            raise ValueError(
                f"{{{{{{{key}}}}}}}: dotted names are not supported; top-level fields of JSON event data only"
            )
        names.append(key)
    return names


def render(template: str, variables: dict[str, str]) -> str:
    """Render once; the values are never rendered again."""
    if "{{" not in template:
        return template
    template_names(template)  # a stored spec is checked again: nothing but variables reaches chevron
    # partials_path=None: no file is ever read; _NO_PARTIALS: not even a dict lookup can succeed.
    return chevron.render(
        list(_tokens(template)), variables, partials_path=None, partials_dict=_NO_PARTIALS, warn=False
    )


def event_variables(event: dict, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The namespace of a render: JSON data fields, then event variables, then secrets (last wins)."""
    variables: dict[str, str] = {}
    data = event.get("data")
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                if NAME_PATTERN.fullmatch(key) or "." in key:
                    continue  # the reserved namespace: data may not shadow a secret or event variable
                variables[key] = _text(value)
    for name, attr in EVENT_VARIABLES.items():
        value = event.get(attr)
        variables[name] = "" if value is None else str(value)
    variables.update(secrets or {})
    return variables


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_json(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, dict):
        return {render(k, variables): render_json(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, variables) for v in value]
    return value
