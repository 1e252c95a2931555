"""What every route module shares: the service, the caller, path and query parameters,
and `route`, which declares an endpoint for the caller's sandbox and for an organization.

Route modules (app.py for our own shapes, particle.py for Particle's, live.py for the
streams) append to ROUTES when imported; create_app adds them in that order.
"""

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.http.auth_throttle import AuthThrottle, client_address
from runtime.http.errors import log, printable
from runtime.http.models import ErrorOut
from runtime.service import Service
from store.errors import Unauthorized, statuses
from store.identity import User

# The tree's statuses, plus what FastAPI itself answers (a body that is not JSON: 400; a method: 405).
ERRORS = {status: {"model": ErrorOut} for status in sorted({400, 405, *statuses()} - {500})}

# authentication ---------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="An API token from `logic init` or `logic tokens create`.")


# Both are async so FastAPI calls them on the event loop: a sync dependency costs a trip
# through the thread pool each, on every request. The token check is one indexed read
# (WAL: readers never wait for writers); endpoints that write stay in the thread pool.
async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> User:
    service: Service = request.app.state.service
    token = credentials.credentials if credentials else None
    if not token:  # 401; a missing token guesses nothing, so it is not counted
        return service.authenticate(token)
    throttle: AuthThrottle = request.app.state.auth_throttle
    address = client_address(request.scope)
    throttle.check(address)  # 429 before the token is even looked at
    try:
        return service.authenticate(token)
    except Unauthorized:
        if throttle.failed(address):
            log.warning(
                "refusing Bearer tokens from %s for %s s: %d failed sign-ins",
                printable(address),
                f"{throttle.window_s:g}",
                throttle.failures_max,
            )
        raise


Svc = Annotated[Service, Depends(get_service)]
Actor = Annotated[User, Depends(get_actor)]
Org = Annotated[str, Path(description="Organization name")]
Ref = Annotated[str, Path(description="Id or name")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many")]
Cursor = Annotated[str | None, Query(max_length=512, description="The next_cursor of the page before: the next page")]

ROUTES: list[tuple[str, Callable, dict[str, Any]]] = []  # (path, endpoint, add_api_route arguments)


def route(method: str, path: str, **kwargs: Any) -> Callable:
    """Declare an endpoint twice: at /v1/... for the caller's own sandbox (called with
    org=None), and at /v1/orgs/{org}/... for an organization."""

    def register(endpoint: Callable) -> Callable:
        name = endpoint.__name__
        kwargs["responses"] = {**ERRORS, **kwargs.get("responses", {})}
        ROUTES.append(("/v1" + path, _without_org(endpoint), dict(kwargs, methods=[method], name=name)))
        ROUTES.append(("/v1/orgs/{org}" + path, endpoint, dict(kwargs, methods=[method], name=f"org_{name}")))
        return endpoint

    return register


def _without_org(endpoint: Callable) -> Callable:
    signature = inspect.signature(endpoint)

    sandbox_endpoint: Any
    if inspect.iscoroutinefunction(endpoint):  # stays on the event loop, as the endpoint asked

        async def on_loop(**kwargs: Any) -> Any:
            return await endpoint(**kwargs, org=None)

        sandbox_endpoint = on_loop
    else:

        def in_threads(**kwargs: Any) -> Any:
            return endpoint(**kwargs, org=None)

        sandbox_endpoint = in_threads

    # inspect.signature (so FastAPI) reads __signature__ (typed Any here: FunctionType does not declare it).
    sandbox_endpoint.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name != "org"]
    )
    sandbox_endpoint.__name__ = endpoint.__name__
    sandbox_endpoint.__doc__ = endpoint.__doc__
    sandbox_endpoint.__annotations__ = {k: v for k, v in endpoint.__annotations__.items() if k != "org"}
    return sandbox_endpoint
