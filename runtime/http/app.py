"""The HTTP API: thin routes over the one Service, with OpenAPI at /docs.

Every /v1 route needs `Authorization: Bearer TOKEN`. Every error is
`{"error": "..."}` with its status: LogicErrors carry theirs (store/errors.py),
a malformed body is 400 or 422, an oversized one 413, anything unexpected a
bare 500. Routes are plain `def`s: FastAPI runs them in its thread pool, as
the service blocks (SQLite, worker runs). POST .../events, the hot path, is
answered by publish_fast_path.py in front of FastAPI when the request is
well formed, with the very same answers. Errors are rendered by errors.py,
the ASGI wrappers are in middleware.py.

Each route that acts for an owner exists twice: `/v1/...` for the caller's
sandbox and `/v1/orgs/{org}/...` for an organization the caller belongs to.

Failed Bearer authentication is throttled per client address (auth_throttle.py),
on every route. `/healthz` answers 503 while the store cannot write (a full disk,
a lock held elsewhere) and 200 again once it can, without a restart.
"""

from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.exceptions import HTTPException

from runtime import paging
from runtime.http import (  # noqa: F401  (their routes: /v1/env, /v1/ledgers)
    changes,  # noqa: F401  (/v1/audit/changes, /v1/audit/verify)
    environment,
    ledgers,
    live,  # noqa: F401  (its routes first: /runs/stream before /runs/{run_id})
    run_replay,  # noqa: F401  (/v1/logic/runs/{run_id}/replay)
    secret_versions,  # noqa: F401  (/v1/secrets/{name}/versions, /v1/secrets:import)
)
from runtime.http.auth_throttle import AuthThrottle
from runtime.http.console import mount_console
from runtime.http.console.security import SecurityHeaders
from runtime.http.errors import http_error_handler, logic_error_handler, validation_error_handler
from runtime.http.middleware import BodyLimit, CountRequests, InFlight, InternalErrors, NulInUrl
from runtime.http.models import (
    INTEGRATION_EXAMPLE,
    AccessList,
    EventAccepted,
    EventIn,
    ExecuteSpec,
    FunctionList,
    FunctionOut,
    FunctionSpec,
    Health,
    IntegrationList,
    IntegrationOut,
    LogList,
    RunList,
    RunOut,
    SecretCreate,
    SecretList,
    SecretOut,
    SecretUpdate,
)
from runtime.http.particle import (
    ParticleFunctionIn,
    ParticleFunctionOut,
    ParticleSecret,
    ParticleSecretIn,
    ParticleSecretOut,
    particle_function,
    particle_secret,
    put_particle_function,
    put_particle_secret,
)
from runtime.http.particle import function_files as particle_files
from runtime.http.publish_fast_path import PublishFastPath
from runtime.http.routing import ROUTES, Actor, Cursor, Limit, Org, Ref, Svc, route
from runtime.integrations.spec import WebhookSpec
from runtime.manifest import files_from_json
from runtime.service import Service
from store.errors import InvalidInput, LogicError

IntegrationBody = Annotated[
    WebhookSpec, Body(description="The same JSON as NAME.webhook.json", examples=[INTEGRATION_EXAMPLE])
]


def create_app(
    service: Service, *, publish_fast_path: bool = True, auth_throttle: AuthThrottle | None = None
) -> FastAPI:
    """The app; `publish_fast_path=False` leaves POST .../events to FastAPI alone (tests
    compare the two); `auth_throttle` replaces the default one (tests bring a clock)."""
    app = FastAPI(
        title="logic-runtime",
        summary="Logic functions with encrypted cloud secrets",
        version="1",
        docs_url=None,  # served by the console from the package's own files: /docs works offline
        redoc_url=None,
        # FastAPI's own OpenTelemetry export (on by default once a provider is configured, e.g.
        # under `opentelemetry-instrument`): request paths, queries and exception texts sent
        # to a collector, an output our redaction never sees. It is off, which also spares
        # every request its check for a provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    if auth_throttle is None:
        auth_throttle = AuthThrottle(
            failures_max=service.settings.auth_failures_max, window_s=service.settings.auth_failure_window_s
        )
    app.state.auth_throttle = throttle = auth_throttle
    for path, endpoint, kwargs in ROUTES:
        app.add_api_route(path, endpoint, **kwargs)
    mount_console(app)
    # Starlette types a handler as taking any Exception, not the class it is registered for
    # (Kludex/starlette#2417): each handler here takes exactly its own class.
    app.add_exception_handler(LogicError, logic_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error_handler)  # type: ignore[arg-type]
    # The last added wraps the others: a request meets the NUL check, the body limit, then the 500 guard,
    # then the count of requests in flight, then the publish fast path (publish_fast_path.py),
    # then FastAPI.
    if publish_fast_path:
        app.add_middleware(PublishFastPath, service=service, throttle=throttle)
    in_flight = InFlight()
    app.add_middleware(CountRequests, counter=in_flight)
    if service.pool is not None:
        service.pool.others_busy = in_flight.busy  # no spinning for runs while requests wait
    app.add_middleware(SecurityHeaders)
    app.add_middleware(InternalErrors)
    app.add_middleware(BodyLimit, max_bytes=service.settings.http_body_max_bytes)
    app.add_middleware(NulInUrl)
    return app


class Degraded(Health):
    ok: bool = False
    store: Literal["degraded"] = "degraded"
    reason: str  # "disk full", "database locked", "disk I/O error"


def healthz(service: Svc) -> Any:
    """Liveness: no token needed. 503 while the store cannot write; 200 again once it can."""
    reason = service.store.fault()
    if reason is None:
        return {"ok": True}
    return JSONResponse(Degraded(reason=reason).model_dump(), status_code=503)


ROUTES.append(
    (
        "/healthz",
        healthz,
        {
            "methods": ["GET"],
            "response_model": Health,
            "tags": ["server"],
            "responses": {503: {"model": Degraded, "description": "Writes fail"}},
        },
    )
)


# secrets ---------------------------------------------------------------------


@route("GET", "/secrets", response_model=SecretList, tags=["secrets"])
def list_secrets(service: Svc, actor: Actor, org: Org) -> dict:
    """Every secret of the owner, with its usage; never a value."""
    return {"secrets": [s.to_json() for s in service.list_secrets(actor, org)]}


@route("POST", "/secrets", response_model=SecretOut | ParticleSecretOut, status_code=201, tags=["secrets"])
def create_secret(body: SecretCreate | ParticleSecretIn, service: Svc, actor: Actor, org: Org) -> dict:
    """Store a new secret. The value is write-only: no response ever contains it.
    Particle's `{"secret": {"name", "value"}}` is answered in its shape, `{"secret": {...}}`."""
    if isinstance(body, ParticleSecretIn):
        if body.secret.name is None:
            raise InvalidInput("secret.name: a name is required")
        info = service.create_secret(actor, body.secret.name, body.secret.value, org)
        return {"secret": particle_secret(service, actor, org, info)}
    return service.create_secret(actor, body.name, body.value, org).to_json()


class SecretWithParticle(SecretOut):
    secret: ParticleSecret = Field(description="The same secret in Particle's shape (particle-cli reads it)")


@route("GET", "/secrets/{name}", response_model=SecretWithParticle, tags=["secrets"])
def get_secret(name: str, service: Svc, actor: Actor, org: Org) -> dict:
    info = service.get_secret(actor, name, org)
    return {**info.to_json(), "secret": particle_secret(service, actor, org, info)}


@route("PUT", "/secrets/{name}", response_model=SecretOut | ParticleSecretOut, tags=["secrets"])
def update_secret(name: str, body: SecretUpdate | ParticleSecretIn, service: Svc, actor: Actor, org: Org) -> dict:
    """Replace the value; it takes effect for the next read by any run. Particle's
    `{"secret": {"value"}}` creates the secret if it does not exist, as Particle's PUT does."""
    if isinstance(body, ParticleSecretIn):
        return put_particle_secret(service, actor, name, body, org)
    return service.update_secret(actor, name, body.value, org).to_json()


@route("DELETE", "/secrets/{name}", status_code=204, response_class=Response, tags=["secrets"])
def delete_secret(name: str, service: Svc, actor: Actor, org: Org) -> Response:
    """Delete a secret no function or integration declares (409 names the users otherwise)."""
    service.delete_secret(actor, name, org)
    return Response(status_code=204)


# functions -------------------------------------------------------------------


def _files(service: Service, spec: FunctionSpec, *exclude: str):
    body = spec.model_dump(mode="json", exclude_unset=True, exclude=set(exclude))
    body.setdefault("name", spec.name)  # a default name (execute) is still the manifest's name
    return files_from_json(body)


@route("GET", "/logic/functions", response_model=FunctionList, tags=["functions"])
def list_functions(service: Svc, actor: Actor, org: Org) -> dict:
    """Every function of the owner: our fields, plus Particle's `source: {type, code}` and
    `logic_triggers` (particle-cli's list, get, enable and disable read them)."""
    return {"logic_functions": [{**f.to_json(), **particle_function(f)} for f in service.list_functions(actor, org)]}


@route(
    "POST",
    "/logic/functions",
    response_model=FunctionOut | ParticleFunctionOut,
    status_code=201,
    tags=["functions"],
    responses={200: {"model": FunctionOut, "description": "A new version of the owner's function of that name"}},
)
def deploy_function(
    body: FunctionSpec | ParticleFunctionIn, response: Response, service: Svc, actor: Actor, org: Org
) -> dict:
    """Deploy a function: 201 for a new one; a new version (200) if the owner has one of that name.
    Particle's `{"logic_function": {...}}` is answered in its shape."""
    if isinstance(body, ParticleFunctionIn):
        fn = service.deploy_function(actor, particle_files(body), org)
    else:
        fn = service.deploy_function(actor, _files(service, body), org)
    if fn.version > 1:
        response.status_code = 200
    if isinstance(body, ParticleFunctionIn):
        return {"logic_function": particle_function(fn)}
    return fn.to_json(with_source=True)


@route("GET", "/logic/functions/{function_id}", response_model=FunctionOut, tags=["functions"])
def get_function(function_id: Ref, service: Svc, actor: Actor, org: Org) -> dict:
    """The function with its source; `logic_function` is the same in Particle's shape
    (particle-api-js `getLogicFunction` reads it)."""
    fn = service.get_function(actor, function_id, org)
    return {**fn.to_json(with_source=True), "logic_function": particle_function(fn)}


@route("PUT", "/logic/functions/{function_id}", response_model=FunctionOut | ParticleFunctionOut, tags=["functions"])
def update_function(
    function_id: Ref, body: FunctionSpec | ParticleFunctionIn, service: Svc, actor: Actor, org: Org
) -> dict:
    """Deploy a new version of this function (the manifest's name must stay the same).
    Particle's `{"logic_function": {...}}` that changes only `enabled` (the CLI's enable and
    disable) makes no new version."""
    if isinstance(body, ParticleFunctionIn):
        return put_particle_function(service, actor, function_id, body, org)
    fn = service.deploy_function(actor, _files(service, body), org, function_id=function_id)
    return fn.to_json(with_source=True)


@route("DELETE", "/logic/functions/{function_id}", status_code=204, response_class=Response, tags=["functions"])
def delete_function(function_id: Ref, service: Svc, actor: Actor, org: Org) -> Response:
    service.delete_function(actor, function_id, org)
    return Response(status_code=204)


@route("GET", "/logic/functions/{function_id}/runs", response_model=RunList, tags=["functions"])
def function_runs(
    function_id: Ref, service: Svc, actor: Actor, org: Org, limit: Limit = 100, cursor: Cursor = None
) -> dict:
    """The function's run records, newest first (the newest `LOGIC_RUNS_KEPT` are kept), a page at a time."""
    runs = service.function_runs(actor, function_id, org, limit, cursor)
    return {"logic_runs": runs, "next_cursor": paging.next_cursor(runs, limit, paging.run_key)}


@route("GET", "/logic/functions/{function_id}/runs/{run_id}", response_model=RunOut, tags=["functions"])
def get_run(function_id: Ref, run_id: str, service: Svc, actor: Actor, org: Org) -> dict:
    return service.get_run(actor, run_id, function_id, org)


@route("POST", "/logic/execute", response_model=RunOut, tags=["functions"])
def execute_function(body: ExecuteSpec, service: Svc, actor: Actor, org: Org) -> dict:
    """Test-run source with an optional event: nothing is deployed; the run record comes back
    whatever its status (only the secret access audit is stored)."""
    files = _files(service, body, "event")
    event = body.event
    return service.execute_function(
        actor, files, event_name=event.name if event else None, data=event.data if event else None, org=org
    )


# events ----------------------------------------------------------------------


@route("POST", "/events", response_model=EventAccepted, status_code=202, tags=["events"])
def publish_event(body: EventIn, service: Svc, actor: Actor, org: Org) -> dict:
    """Publish an event; 202 once it is durable (delivery to functions and integrations follows)."""
    return service.publish_event(actor, body.name, body.data, org)


# integrations ----------------------------------------------------------------


@route("GET", "/integrations", response_model=IntegrationList, tags=["integrations"])
def list_integrations(service: Svc, actor: Actor, org: Org) -> dict:
    return {"integrations": [i.to_json() for i in service.list_integrations(actor, org)]}


@route("POST", "/integrations", response_model=IntegrationOut, status_code=201, tags=["integrations"])
def create_integration(body: IntegrationBody, service: Svc, actor: Actor, org: Org) -> dict:
    return service.create_integration(actor, body.to_json(), org).to_json()


@route("GET", "/integrations/{integration_id}", response_model=IntegrationOut, tags=["integrations"])
def get_integration(integration_id: Ref, service: Svc, actor: Actor, org: Org) -> dict:
    return service.get_integration(actor, integration_id, org).to_json()


@route("PUT", "/integrations/{integration_id}", response_model=IntegrationOut, tags=["integrations"])
def update_integration(integration_id: Ref, body: IntegrationBody, service: Svc, actor: Actor, org: Org) -> dict:
    return service.update_integration(actor, integration_id, body.to_json(), org).to_json()


@route("DELETE", "/integrations/{integration_id}", status_code=204, response_class=Response, tags=["integrations"])
def delete_integration(integration_id: Ref, service: Svc, actor: Actor, org: Org) -> Response:
    service.delete_integration(actor, integration_id, org)
    return Response(status_code=204)


@route("GET", "/integrations/{integration_id}/logs", response_model=LogList, tags=["integrations"])
def integration_logs(
    integration_id: Ref, service: Svc, actor: Actor, org: Org, limit: Limit = 100, cursor: Cursor = None
) -> dict:
    """Request and response of recent deliveries, with [[SENSITIVE]] in place of every secret."""
    logs = service.integration_logs(actor, integration_id, org, limit, cursor)
    return {"logs": logs, "next_cursor": paging.next_cursor(logs, limit, paging.log_key)}


# the access audit ------------------------------------------------------------


@route("GET", "/audit", response_model=AccessList, tags=["audit"])
def audit(
    service: Svc,
    actor: Actor,
    org: Org,
    secret: Annotated[str | None, Query(description="Only accesses of this secret")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    """Who read which secret, when, in which run: newest first, a page at a time (`logic audit`)."""
    rows = service.audit(actor, secret, org, limit, cursor)
    accesses = [a.to_json() for a in rows]
    return {"accesses": accesses, "next_cursor": paging.next_cursor(rows, limit, paging.access_key)}


__all__ = ["create_app"]
