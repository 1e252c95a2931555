"""A secret's versions, restore, and bulk import, at `/v1/...` and `/v1/orgs/{org}/...`.

    GET  /v1/secrets/{name}/versions                     the current and the kept versions
    POST /v1/secrets/{name}/versions/{version}/restore   make a kept version current again
    POST /v1/secrets:import                              .env or JSON, all or nothing

No route takes a value out: versions list numbers, times and who; a restore moves a
value from one ciphertext to another inside the store; an import answers with names,
and a refused one with every problem by line (`problems`), never a value.
"""

from typing import Annotated, Any, Literal

from fastapi import Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from runtime.http.models import SecretOut, Strict
from runtime.http.routing import Actor, Org, Svc, route
from store.secrets import ImportRefused

Version = Annotated[int, Path(description="A version number, as `versions` lists it")]


class SecretVersionOut(BaseModel):
    version: int
    created_at: str = Field(description="When this version became the current value")
    created_by: str | None = Field(description='Who made it current, and from where: "alice (token:3)"')
    current: bool
    restored_from: int | None = Field(description="The version a restore copied, if it was one")


class SecretVersionList(BaseModel):
    versions: list[SecretVersionOut] = Field(description="Newest first; the current one first of all")


class SecretRestored(SecretOut):
    version: int = Field(description="The new current version")
    restored_from: int


class SecretImport(Strict):
    content: str = Field(
        description="The file's text: NAME=value lines (.env: quotes, `export`, comments, multi-line "
        'quoted values) or one JSON object of "NAME": "value" pairs. Write-only: never returned.',
        json_schema_extra={"writeOnly": True},
    )
    format: Literal["auto", "dotenv", "json"] = Field(
        default="auto", description="auto: JSON if the content starts with { or [, else .env"
    )
    update: bool = Field(default=False, description="Replace existing values (each old one is kept as a version)")


class ImportOut(BaseModel):
    created: list[str] = Field(description="Names created, in the order of the file")
    updated: list[str] = Field(description="Names whose value was replaced (with update)")


class ImportRefusedOut(BaseModel):
    error: str
    error_description: str
    problems: list[str] = Field(description='Every problem, each naming its place: "line 7: ..." or "entry 3: ..."')


@route("GET", "/secrets/{name}/versions", response_model=SecretVersionList, tags=["secrets"])
def secret_versions(name: str, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    """The secret's versions: number, time, who, which is current. Never a value."""
    return {"versions": [v.to_json() for v in service.secret_versions(actor, name, org)]}


@route("POST", "/secrets/{name}/versions/{version}/restore", response_model=SecretRestored, tags=["secrets"])
def restore_secret(name: str, version: Version, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    """Make a kept version current again, as a new version; the next run reads it. Last accessed
    and usages are unchanged. 404 for a version that is not kept, 409 for the current one."""
    info = service.restore_secret(actor, name, version, org)
    return {**info.to_json(), "version": info.version, "restored_from": version}


@route(
    "POST",
    "/secrets:import",
    response_model=ImportOut,
    tags=["secrets"],
    responses={422: {"model": ImportRefusedOut, "description": "Nothing was imported: every problem, by line"}},
)
def import_secrets(body: SecretImport, service: Svc, actor: Actor, org: Org) -> Any:
    """Import many secrets at once (`logic secrets import`): every entry is checked first, then
    all are written in one transaction, or none. The answer names them; never a value."""
    try:
        result = service.import_secrets(actor, body.content, format=body.format, update=body.update, org=org)
    except ImportRefused as exc:  # the house shape (errors.py), plus the problems one by one
        return JSONResponse(
            {"error": exc.message, "error_description": exc.message, "problems": exc.issues}, status_code=exc.status
        )
    return result.to_json()
