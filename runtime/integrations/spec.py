"""`NAME.webhook.json`: the spec of a webhook integration, checked.

Our field names and Particle's are both accepted, so an exported Particle
webhook imports as is: `requestType` is `method`, `eventName` is `event`,
`disabled` is the opposite of `enabled`, and Particle's free-text `name`
("Record my metric") becomes an identifier (`Record-my-metric`), or the
event prefix when there is none; `noDefaults`, `responseTemplate`,
`responseTopic`, `errorResponseTopic` and `rejectUnauthorized` are Particle's
own. `mydevices` and `unchunked` are accepted and change nothing (events
here have no devices; responses are published whole). Refused rather than
ignored, because ignoring them would send more than the spec asks:
`deviceID` (no device filter here) and `dataUrlResponseEvent: true`.

What a template may contain is `templates`; what its names mean is
`variables`. This module checks each field, the policy for secrets in every
template, and that an integration with secrets takes its URL's scheme and
host from the literal text of the template (else whoever publishes the
event would choose where the secrets go).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runtime.integrations.templates import Tag, compile_template, problems, template_names
from runtime.integrations.variables import PREDEFINED
from runtime.manifest import check_resource_name, read_json_file
from store.backend import holds_lone_surrogate
from store.errors import DeployError
from store.secrets import NAME_PATTERN, check_declared

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ORIGIN_END = re.compile(r"[^/?#]*//[^/?#]*[/?#]")  # scheme://host[:port] and the character after it
# Particle's names for our fields (ours win when both are given and agree; disagreeing is an error).
_RENAMED = {"requestType": "method", "eventName": "event"}
_ACCEPTED_UNUSED = ("mydevices", "unchunked")
_FREE_TEXT = re.compile(r"[^A-Za-z0-9_.-]")  # a character no resource name has: Particle's descriptive name


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str = ""


class WebhookSpec(BaseModel):
    """NAME.webhook.json, checked; `json` is the `json_` attribute (BaseModel has a .json)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    event: str = Field(min_length=1)  # a prefix; the event-name rule applies (IntegrationRunner.validate)
    url: str = Field(min_length=1, max_length=8192)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")  # an object (its strings are templates) or one template
    form: dict[str, str] | None = None
    body: str | None = None
    auth: BasicAuth | None = None
    no_defaults: bool = Field(default=False, alias="noDefaults")
    response_template: str | dict[str, Any] | list[Any] | None = Field(default=None, alias="responseTemplate")
    response_topic: str | None = Field(default=None, alias="responseTopic")
    error_response_topic: str | None = Field(default=None, alias="errorResponseTopic")
    reject_unauthorized: bool = Field(default=True, alias="rejectUnauthorized")
    secrets: list[str] = Field(default_factory=list)
    # The owner's environment variables as `{{{NAME}}}` (plain text, not masked).
    use_env: bool = False
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _particle_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        problems = []
        for theirs, ours in _RENAMED.items():
            if theirs in data:
                value = data.pop(theirs)
                if ours in data and not _same(ours, data[ours], value):
                    problems.append(f"{theirs} and {ours} name the same field: give one")
                data.setdefault(ours, value)
        if "disabled" in data:
            disabled = data.pop("disabled")
            if not isinstance(disabled, bool):
                problems.append("disabled: must be true or false")
            elif "enabled" in data and data["enabled"] is disabled:
                problems.append("disabled and enabled say different things: give one")
            else:
                data.setdefault("enabled", not disabled)
        if "name" not in data and isinstance(data.get("event"), str):
            data["name"] = data["event"]  # Particle's name is optional
        if isinstance(data.get("name"), str) and _FREE_TEXT.search(data["name"]):
            data["name"] = _identifier(data["name"])
        for key in _ACCEPTED_UNUSED:
            data.pop(key, None)
        if data.pop("deviceID", None) not in (None, ""):
            problems.append("deviceID: a webhook here fires for the owner's events; there is no device filter")
        if data.pop("dataUrlResponseEvent", False) is not False:
            problems.append("dataUrlResponseEvent: responses are published as text; data URLs are not supported")
        if problems:
            raise ValueError("; ".join(problems))
        return data

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_resource_name(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"(?i)https?://[^/?#]", value):
            raise ValueError("url must start with http:// or https:// and a host")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[str]) -> list[str]:
        for value in check_declared(values):
            if value in PREDEFINED:
                raise ValueError(f"{value} is an event variable, not a secret name")
        return values

    @model_validator(mode="after")
    def _templates(self) -> WebhookSpec:
        found = []
        given = [f for f, v in (("json", self.json_), ("form", self.form), ("body", self.body)) if v is not None]
        if len(given) > 1:
            found.append(f"use at most one of json, form and body, not {' and '.join(given)}")
        if self.auth is not None and any(h.lower() == "authorization" for h in self.headers):
            found.append("auth and an Authorization header are exclusive: use one")
        for header in self.headers:
            if "{{" not in header and not HEADER_NAME.fullmatch(header):
                found.append(f"headers: {header!r} is not a valid header name")
        declared = set(self.secrets)
        for where, template, published in self.templates():
            if holds_lone_surrogate(template):  # stored as a JSON escape, then every answer naming it was a 500
                found.append(f"{where}: not valid UTF-8 text (it holds a lone surrogate)")
                continue
            try:
                compiled = compile_template(template)
            except ValueError as exc:
                found.append(f"{where}: {exc}")
                continue
            found += [
                f"{where}: {problem}"
                for problem in problems(
                    compiled,
                    secrets=declared,
                    predefined=PREDEFINED,
                    secrets_allowed=not published,
                    reserved_from_data=where.startswith("responseTemplate"),
                    env=self.use_env,
                )
            ]
        if declared and not found:
            found += self._origin_problems(declared)
        if declared and not self.reject_unauthorized:
            found.append(
                "rejectUnauthorized: false is refused in an integration that declares secrets "
                "(whoever intercepts the connection would get them)"
            )
        if found:
            raise ValueError("; ".join(dict.fromkeys(found)))
        return self

    def _origin_problems(self, declared: set[str]) -> list[str]:
        """Threat: `https://{{host}}/x` lets the publisher send the secrets anywhere.

        The scheme and host (up to the first `/`, `?` or `#` after `//`) must be literal
        text, or a declared secret as a plain variable (the owner's value, not the
        publisher's). A tag before that point, whatever it is, is refused."""
        literal = ""
        env = set(self.env_names())
        for part in compile_template(self.url).parts:
            if _ORIGIN_END.match(literal):
                return []
            if isinstance(part, str):
                literal += part
            elif isinstance(part, Tag) and part.kind in ("variable", "raw") and part.name in declared | env:
                literal += "x"  # opaque host text: the owner's value, not the publisher's
            else:
                return [
                    f"url: the scheme and host may not use event variables ({part}) in an integration that "
                    "declares secrets: write them as literal text (the publisher would choose where they go)"
                ]
        return []

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        """(where, template, published) for every configurable string; `published`: what it
        renders becomes an event name or event data, so it may not use secrets."""
        yield "url", self.url, False
        for key, value in self.query.items():
            yield f"query.{key}", key, False
            yield f"query.{key}", value, False
        for key, value in self.headers.items():
            yield f"headers.{key}", key, False
            yield f"headers.{key}", value, False
        for where, template in _json_templates("json", self.json_):
            yield where, template, False
        for key, value in (self.form or {}).items():
            yield f"form.{key}", key, False
            yield f"form.{key}", value, False
        if self.body is not None:
            yield "body", self.body, False
        if self.auth is not None:
            yield "auth.username", self.auth.username, False
            yield "auth.password", self.auth.password, False
        for where, template in _json_templates("responseTemplate", self.response_template):
            yield where, template, True
        for where, topic in (("responseTopic", self.response_topic), ("errorResponseTopic", self.error_response_topic)):
            if topic is not None:
                yield where, topic, True

    def used_secrets(self) -> list[str]:
        """Declared secrets that some template references, in declaration order."""
        used = {name for _, t, _ in self.templates() for name in template_names(t)}
        return [name for name in self.secrets if name in used]

    def env_names(self) -> list[str]:
        """With `use_env`: the names in secret-name syntax that the templates use and that are
        neither a declared secret nor an event variable (environment variables), sorted."""
        if not self.use_env:
            return []
        used = {
            name
            for where, t, _ in self.templates()
            if not where.startswith("responseTemplate")
            for name in template_names(t)
        }
        declared = set(self.secrets)
        return sorted(n for n in used if NAME_PATTERN.fullmatch(n) and n not in declared and n not in PREDEFINED)

    def to_json(self) -> dict[str, Any]:
        """The NAME.webhook.json form, in our names: optional fields only when given."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        for key in ("headers", "query"):
            if not data[key]:
                del data[key]
        if not data["noDefaults"]:
            del data["noDefaults"]
        if data["rejectUnauthorized"]:
            del data["rejectUnauthorized"]
        if not data["use_env"]:
            del data["use_env"]
        return data


def _identifier(text: str) -> str:
    """Particle's descriptive name as a resource name; `text` as is when nothing is left of it."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip("-._")[:64].rstrip("-")
    return name or text


def _same(field: str, a: Any, b: Any) -> bool:
    if field == "method" and isinstance(a, str) and isinstance(b, str):
        return a.upper() == b.upper()  # "Post" is POST, as the method's own rule has it
    return bool(a == b)


def _json_templates(where: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{where}.{key}", key
            yield from _json_templates(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_templates(f"{where}[{i}]", item)


def parse_spec(data: object, *, filename: str = "webhook") -> WebhookSpec:
    """Validate spec JSON (already decoded); DeployError lists every problem."""
    if not isinstance(data, dict):
        raise DeployError([f"{filename}: expected a JSON object"])
    try:
        return WebhookSpec.model_validate(data)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            found.append(f"{filename}: {loc}: {message}" if loc else f"{filename}: {message}")
        raise DeployError(found) from None


def load_spec(path: Path | str) -> dict[str, Any]:
    """Read a NAME.webhook.json file into a dict (validated by the service)."""
    path = Path(path)
    _text, data = read_json_file(path)
    if not isinstance(data, dict):
        raise DeployError([f"{path.name}: expected a JSON object"])
    return data
