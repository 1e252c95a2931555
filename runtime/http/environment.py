"""`/v1/env` and `/v1/orgs/{org}/env`: environment variables, plain text (they are shown)."""

from typing import Any

from fastapi import Response
from pydantic import BaseModel, Field

from runtime.http.models import Strict
from runtime.http.routing import Actor, Org, Svc, route


class EnvOut(BaseModel):
    name: str
    value: str
    created_at: str
    updated_at: str


class EnvList(BaseModel):
    env: list[EnvOut]


class EnvIn(Strict):
    value: str = Field(description="Plain text; all of an owner's values total at most 16 KiB")


@route("GET", "/env", response_model=EnvList, tags=["environment"])
def list_env(service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    """Every environment variable of the owner, with its value."""
    return {"env": [v.to_json() for v in service.list_env(actor, org)]}


@route("GET", "/env/{name}", response_model=EnvOut, tags=["environment"])
def get_env(name: str, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    return service.get_env(actor, name, org).to_json()


@route("PUT", "/env/{name}", response_model=EnvOut, tags=["environment"])
def set_env(name: str, body: EnvIn, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    """Create or replace a variable (LOGIC_ and PARTICLE_ names are reserved); the next run sees it."""
    return service.set_env(actor, name, body.value, org).to_json()


@route("DELETE", "/env/{name}", status_code=204, response_class=Response, tags=["environment"])
def delete_env(name: str, service: Svc, actor: Actor, org: Org) -> Response:
    service.delete_env(actor, name, org)
    return Response(status_code=204)
