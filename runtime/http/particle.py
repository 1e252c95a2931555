"""Particle's shapes beside our own, so particle-cli and particle-api-js work unchanged.

Particle wraps a secret as `{"secret": {...}}` and a function as `{"logic_function":
{...}}` with `source: {type, code}` and `logic_triggers`; it publishes at
`POST /v1/devices/events`. The translations live here, the one service layer does
the work. Where Particle's answer carries what we do not have (products, devices,
creators' user ids), the field its clients read is there with an empty value:
`product_id` 0, `template_slug` null, `created_by`/`updated_by` the owner, `coreid`
"api" (README, "Coming from Particle", lists them).

Our plain shapes stay: each route accepts either body and answers in the shape it
was asked in (GET answers, which have no body to tell, carry both).
"""

from typing import Any, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from runtime.http.models import SECRET_NAME_SCHEMA, Open, Strict
from runtime.http.routing import Actor, Org, Ref, Svc, route
from runtime.manifest import FunctionFiles, files_from_json
from runtime.service import Service
from store.errors import InvalidInput
from store.functions import FunctionRecord
from store.identity import User
from store.secrets import SecretInfo

SOURCE_TYPE = "Python"  # what `source.type` says of our functions (Particle's say "JavaScript")

# secrets -----------------------------------------------------------------------------


class ParticleSecretFields(Strict):
    name: str | None = Field(default=None, json_schema_extra=SECRET_NAME_SCHEMA)
    value: str = Field(description="Write-only: never returned", json_schema_extra={"minLength": 1, "writeOnly": True})


class ParticleSecretIn(Strict):
    """Particle's body: `{"secret": {"name", "value"}}` (`name` only on create)."""

    secret: ParticleSecretFields


class ParticleSecret(Open):
    name: str
    created_at: str
    updated_at: str
    last_accessed_at: str | None
    logic_functions: list[str] = Field(description="Ids of the functions that declare it")
    integrations: list[dict[str, Any]] = Field(description="`{id, name}` of the integrations that declare it")


class ParticleSecretOut(BaseModel):
    secret: ParticleSecret


def particle_secret(service: Service, actor: User, org: str | None, info: SecretInfo) -> dict[str, Any]:
    """Particle's view of a secret: its users by id (the CLI links each one)."""
    functions = {f.name: f.id for f in service.list_functions(actor, org)} if info.logic_functions else {}
    integrations = {i.name: i.id for i in service.list_integrations(actor, org)} if info.integrations else {}
    data = info.to_json()
    return {
        **data,
        "logic_functions": [functions.get(name, name) for name in info.logic_functions],
        "integrations": [{"id": integrations.get(name, name), "name": name} for name in info.integrations],
    }


def put_particle_secret(
    service: Service, actor: User, name: str, body: ParticleSecretIn, org: str | None
) -> dict[str, Any]:
    """Particle's PUT creates the secret or replaces its value."""
    fields = body.secret
    if fields.name is not None and fields.name != name:
        raise InvalidInput(f"secret.name {fields.name!r} differs from the name in the path ({name!r})")
    if service.secret_exists(actor, name, org):
        info = service.update_secret(actor, name, fields.value, org)
    else:
        info = service.create_secret(actor, name, fields.value, org)
    return {"secret": particle_secret(service, actor, org, info)}


# logic functions ---------------------------------------------------------------------

_TRIGGER_TYPES = {"event": "Event", "schedule": "Scheduled", "ledger_change": "LedgerChange"}


class ParticleSource(Strict):
    type: str = Field(default=SOURCE_TYPE, description="Ignored: the code is always Python here")
    code: str


class ParticleTrigger(BaseModel):
    type: Literal["Event", "Scheduled", "LedgerChange"]
    event_name: str | None = None
    cron: str | None = None
    ledger_name: str | None = None  # LedgerChange: the ledger, and "set" / "delete" (default both)
    change_type: Literal["set", "delete"] | None = None
    start_at: str | None = None
    end_at: str | None = None
    enabled: bool = True
    id: str | None = None  # Particle's trigger id: ignored (triggers belong to the version)


class ParticleFunctionFields(BaseModel):
    name: str
    description: str = ""
    enabled: bool = True
    source: ParticleSource
    logic_triggers: list[ParticleTrigger] = []


class ParticleFunctionIn(Strict):
    """Particle's body: `{"logic_function": {name, description, enabled, source: {type, code},
    logic_triggers}}` (other fields a client echoes back, such as `id` or `version`, are ignored)."""

    logic_function: ParticleFunctionFields


def particle_triggers(fn: FunctionRecord) -> list[dict[str, Any]]:
    triggers = []
    for index, trigger in enumerate(fn.manifest.get("triggers", [])):
        kind = trigger.get("type")
        entry: dict[str, Any] = {
            "id": f"{fn.id}:{index}",
            "type": _TRIGGER_TYPES.get(kind, kind),
            "logic_function_id": fn.id,
            "enabled": trigger.get("enabled", True),
            "product_id": 0,
        }
        if kind == "event":
            entry["event_name"] = trigger.get("event_name")
        elif kind == "ledger_change":
            entry.update(ledger_name=trigger.get("ledger"), change_type=trigger.get("change_type"))
        else:
            entry.update(cron=trigger.get("cron"), start_at=trigger.get("start_at"), end_at=trigger.get("end_at"))
        triggers.append(entry)
    return triggers


def particle_function(fn: FunctionRecord) -> dict[str, Any]:
    """Particle's fields of a function (added beside ours in listings; alone in a wrapped answer)."""
    return {
        "id": fn.id,
        "owner_id": fn.owner,
        "version": fn.version,
        "enabled": fn.enabled,
        "name": fn.name,
        "description": fn.manifest.get("description", ""),
        "template_slug": None,
        "source": {"type": SOURCE_TYPE, "code": fn.source},
        "created_at": fn.created_at,
        "updated_at": fn.updated_at,
        "created_by": fn.owner,
        "updated_by": fn.owner,
        "logic_triggers": particle_triggers(fn),
    }


def function_files(body: ParticleFunctionIn, current: FunctionRecord | None = None) -> FunctionFiles:
    """Our manifest from Particle's function: its triggers translated; the secrets the
    current version declares are kept (Particle has no declaration to send)."""
    # `source.type` is not checked: particle-cli always sends "JavaScript" (it names every
    # download NAME.js); the code is Python here, and JavaScript fails the deploy's syntax check.
    fields = body.logic_function
    triggers = []
    for index, trigger in enumerate(fields.logic_triggers):
        if trigger.type == "Event":
            entry: dict[str, Any] = {"type": "event", "event_name": trigger.event_name}
        elif trigger.type == "LedgerChange":
            if trigger.ledger_name is None:
                raise InvalidInput(f"logic_triggers.{index}: a LedgerChange trigger needs ledger_name")
            entry = {"type": "ledger_change", "ledger": trigger.ledger_name}
            if trigger.change_type is not None:
                entry["change_type"] = trigger.change_type
        else:
            entry = {"type": "schedule", "cron": trigger.cron}
            entry.update({k: v for k, v in (("start_at", trigger.start_at), ("end_at", trigger.end_at)) if v})
        if not trigger.enabled:
            entry["enabled"] = False
        if entry.get("event_name", "") is None or entry.get("cron", "") is None:
            raise InvalidInput(f"logic_triggers.{index}: an Event trigger needs event_name, a Scheduled one cron")
        triggers.append(entry)
    manifest: dict[str, Any] = {
        "name": fields.name,
        "description": fields.description,
        "enabled": fields.enabled,
        "triggers": triggers,
    }
    if current is not None:
        for key in ("secrets", "entry", "limits"):
            if current.manifest.get(key) is not None:
                manifest[key] = current.manifest[key]
    return files_from_json({**manifest, "source": fields.source.code})


def _same_but_enabled(fn: FunctionRecord, files: FunctionFiles) -> bool:
    """True when a Particle PUT changes nothing but `enabled` (the CLI's enable/disable
    sends the whole function back): then no new version is made."""
    theirs = files.manifest.model_dump(mode="json", exclude_none=True)
    return fn.source == files.source and _but_enabled(fn.manifest) == _but_enabled(theirs)


def _but_enabled(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "enabled"}


def put_particle_function(
    service: Service, actor: User, ref: str, body: ParticleFunctionIn, org: str | None
) -> dict[str, Any]:
    current = service.get_function(actor, ref, org)
    files = function_files(body, current)
    if _same_but_enabled(current, files):
        fn = service.set_function_enabled(actor, current.id, body.logic_function.enabled, org)
    else:
        fn = service.deploy_function(actor, files, org, function_id=current.id)
    return {"logic_function": particle_function(fn)}


class ParticleFunctionOut(BaseModel):
    logic_function: dict[str, Any]


# runs --------------------------------------------------------------------------------


class ParticleRunLogs(BaseModel):
    logs: list[dict[str, Any]] = Field(description="`{timestamp, level, message}`, oldest first")


@route("GET", "/logic/functions/{function_id}/runs/{run_id}/logs", response_model=ParticleRunLogs, tags=["particle"])
def run_logs(function_id: Ref, run_id: str, service: Svc, actor: Actor, org: Org) -> dict:
    """A run's log lines in Particle's field names (particle-api-js `getLogicRunLogs`)."""
    record = service.get_run(actor, run_id, function_id, org)
    return {
        "logs": [
            {"timestamp": entry.get("at"), "level": entry.get("level"), "message": entry.get("message")}
            for entry in record.get("logs", [])
        ]
    }


# events ------------------------------------------------------------------------------


class DeviceEventIn(Strict):
    """Particle's publish: `name`, `data`, `private`, `ttl` (JSON or a form)."""

    name: str = Field(description="1-64 characters", examples=["temp"])
    data: str | None = None
    private: bool | str = Field(default=True, description="Accepted for Particle's clients; every event is private")
    ttl: int | str = Field(default=60, description="Accepted for Particle's clients; not used")


class DeviceEventAccepted(BaseModel):
    ok: bool = True
    id: str
    name: str
    published_at: str
    deliveries: int


async def _device_event(request: Request) -> DeviceEventIn:
    """The body as JSON or as a form (particle-cli sends JSON, curl users often a form);
    a bad one answers like any other body (400 not JSON, 422 naming the field)."""
    try:
        if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/")):
            form = await request.form()
            return DeviceEventIn.model_validate({k: v for k, v in form.items() if isinstance(v, str)})
        return DeviceEventIn.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err.get("loc", ()))} for err in exc.errors(include_input=False)]
        ) from None


@route(
    "POST",
    "/devices/events",
    response_model=DeviceEventAccepted,
    tags=["particle"],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": DeviceEventIn.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": DeviceEventIn.model_json_schema()},
            }
        }
    },
)
async def publish_device_event(request: Request, service: Svc, actor: Actor, org: Org) -> dict:
    """Particle's door to the same durable publish as POST /v1/events (200 once it is durable)."""
    owner_check = await run_in_threadpool(service.owner_for, actor, org)  # 403 for a foreign org, before the body
    del owner_check
    event = await _device_event(request)
    accepted = await run_in_threadpool(service.publish_event, actor, event.name, event.data, org)
    return {"ok": True, **accepted}
