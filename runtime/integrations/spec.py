"""`NAME.webhook.json`: the spec of a webhook integration, checked.

What a template may contain is in `templates`; this module checks a spec's
fields, that every secret-syntax name a template uses is declared, and that
the URL's origin does not depend on the publisher when secrets are sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runtime.integrations.templates import EVENT_VARIABLES, render, template_names
from runtime.manifest import check_resource_name, read_json_file
from store.errors import DeployError
from store.secrets import NAME_PATTERN, check_declared

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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
    json_: Any = Field(default=None, alias="json")
    form: dict[str, str] | None = None
    body: str | None = None
    auth: BasicAuth | None = None
    secrets: list[str] = Field(default_factory=list)
    enabled: bool = True

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
            if value in EVENT_VARIABLES:
                raise ValueError(f"{value} is an event variable, not a secret name")
        return values

    @model_validator(mode="after")
    def _templates(self) -> WebhookSpec:
        problems = []
        given = [f for f, v in (("json", self.json_), ("form", self.form), ("body", self.body)) if v is not None]
        if len(given) > 1:
            problems.append(f"use at most one of json, form and body, not {' and '.join(given)}")
        if self.auth is not None and any(h.lower() == "authorization" for h in self.headers):
            problems.append("auth and an Authorization header are exclusive: use one")
        for header in self.headers:
            if "{{" not in header and not HEADER_NAME.fullmatch(header):
                problems.append(f"headers: {header!r} is not a valid header name")
        declared = set(self.secrets)
        for where, template in self.templates():
            try:
                names = template_names(template)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            for name in names:
                if NAME_PATTERN.fullmatch(name) and name not in declared and name not in EVENT_VARIABLES:
                    problems.append(
                        f"{where}: {{{{{{{name}}}}}}} is neither a declared secret nor an event variable: "
                        f'add {name} to "secrets" (names in secret-name syntax are reserved)'
                    )
        if declared and not problems and self._origin_uses(lambda name: name not in declared):
            problems.append(
                "url: the scheme and host may not use event variables in an integration "
                "that declares secrets (the publisher would choose where they go)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _origin_uses(self, test: Callable[[str], bool]) -> bool:
        """Whether a variable that passes `test` lands in the url's scheme and host once rendered."""
        markers = {name: f"\x00{i}\x00" for i, name in enumerate(template_names(self.url))}
        origin = re.match(r"[^/?#]*//[^/?#]*", render(self.url, markers))
        text = origin.group() if origin else ""
        return any(marker in text and test(name) for name, marker in markers.items())

    def templates(self) -> Iterator[tuple[str, str]]:
        """(where, template) for every configurable string."""
        yield "url", self.url
        for key, value in self.query.items():
            yield f"query.{key}", key
            yield f"query.{key}", value
        for key, value in self.headers.items():
            yield f"headers.{key}", key
            yield f"headers.{key}", value
        yield from _json_templates("json", self.json_)
        for key, value in (self.form or {}).items():
            yield f"form.{key}", key
            yield f"form.{key}", value
        if self.body is not None:
            yield "body", self.body
        if self.auth is not None:
            yield "auth.username", self.auth.username
            yield "auth.password", self.auth.password

    def used_secrets(self) -> list[str]:
        """Declared secrets that some template references, in declaration order."""
        used = {name for _, t in self.templates() for name in template_names(t)}
        return [name for name in self.secrets if name in used]

    def to_json(self) -> dict:
        """The NAME.webhook.json form: optional fields only when given."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        for key in ("headers", "query"):
            if not data[key]:
                del data[key]
        return data


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
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{filename}: {loc}: {message}" if loc else f"{filename}: {message}")
        raise DeployError(problems) from None


def load_spec(path: Path | str) -> dict:
    """Read a NAME.webhook.json file into a dict (validated by the service)."""
    path = Path(path)
    _text, data = read_json_file(path)
    if not isinstance(data, dict):
        raise DeployError([f"{path.name}: expected a JSON object"])
    return data
