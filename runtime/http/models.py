"""The HTTP API's request and response bodies, as pydantic models.

They exist so that OpenAPI (`/docs`, `/openapi.json`) shows the real shapes.
The rules themselves stay in the store and the service: where a constraint
is only documented here (`json_schema_extra`), the service enforces it and
words the error; the API does not re-implement it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from runtime.manifest import Manifest

if TYPE_CHECKING:
    from pydantic.config import JsonDict

SECRET_NAME_SCHEMA: JsonDict = {"pattern": r"^[A-Z_][A-Z0-9_]*$", "maxLength": 64, "examples": ["API_KEY"]}


class Strict(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A response body that documents its known fields and passes the others through."""

    model_config = ConfigDict(extra="allow")


# secrets ---------------------------------------------------------------------


class SecretCreate(Strict):
    name: str = Field(json_schema_extra=SECRET_NAME_SCHEMA)
    value: str = Field(
        description="Non-empty UTF-8 text, at most 64 KiB. Write-only: never returned.",
        json_schema_extra={"minLength": 1, "writeOnly": True},
    )


class SecretUpdate(Strict):
    value: str = Field(
        description="The new value; the previous one is kept as a version, never shown.",
        json_schema_extra={"minLength": 1, "writeOnly": True},
    )


class SecretOut(BaseModel):
    """What anyone may see of a secret. No `value` field: a response model filters to these keys."""

    name: str
    created_at: str
    updated_at: str
    last_accessed_at: str | None
    usage_count: int
    logic_functions: list[str]
    integrations: list[str]


class SecretList(BaseModel):
    secrets: list[SecretOut]


# functions and runs ------------------------------------------------------------


class FunctionSpec(Manifest):
    """NAME.logic.json's fields plus the Python source of NAME.py."""

    source: str = Field(description="The function's Python source (NAME.py)")


class EventIn(Strict):
    name: str = Field(description="1-64 characters, no control characters", examples=["sensor-test"])
    data: str | None = Field(default=None, description="Event data as text (at most 100 KiB), or null")


class ExecuteSpec(FunctionSpec):
    """A test run: the function's files as JSON and an optional event. Nothing is deployed."""

    name: str = "test-run"
    event: EventIn | None = None


class FunctionSummary(Open):
    id: str
    name: str
    owner: str
    enabled: bool
    version: int
    created_at: str
    updated_at: str
    description: str
    entry: str
    secrets: list[str]
    triggers: list[dict[str, Any]]
    limits: dict[str, Any] | None


class FunctionOut(FunctionSummary):
    source: str = Field(description="The current version's Python source")


class FunctionList(BaseModel):
    logic_functions: list[FunctionSummary]


class RunOut(Open):
    id: str
    function_id: str
    function_version: int
    trigger: dict[str, Any]
    status: str = Field(description="success | error | timeout | memory_exceeded | crashed")
    started_at: str
    finished_at: str
    duration_ms: float
    logs: list[dict[str, Any]]
    result: Any = None
    error: dict[str, Any] | None = None
    secrets_accessed: list[str]
    events_published: list[dict[str, Any]]


class RunList(BaseModel):
    logic_runs: list[RunOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last one")


# events ----------------------------------------------------------------------


class EventAccepted(Open):
    id: str
    name: str
    published_at: str


# integrations ----------------------------------------------------------------


INTEGRATION_EXAMPLE = {
    "name": "notify",
    "event": "sensor/",
    "url": "https://api.example.com/v1/ingest?key={{{API_KEY}}}",
    "method": "POST",
    "headers": {"Authorization": "Bearer {{{API_KEY}}}"},
    "json": {"name": "{{{EVENT_NAME}}}", "value": "{{{EVENT_DATA}}}"},
    "secrets": ["API_KEY"],
    "enabled": True,
}


class IntegrationOut(Open):
    id: str
    owner: str
    name: str
    event: str
    enabled: bool


class IntegrationList(BaseModel):
    integrations: list[IntegrationOut]


class LogList(BaseModel):
    logs: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last one")


class AccessOut(BaseModel):
    secret: str
    consumer_kind: str = Field(description="logic_function | integration")
    consumer: str
    consumer_id: str
    run_id: str | None
    at: str


class AccessList(BaseModel):
    accesses: list[AccessOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last one")


class ErrorOut(BaseModel):
    error: str
    error_description: str = Field(description="The same text, where Particle's clients read it")


class Health(BaseModel):
    ok: bool
