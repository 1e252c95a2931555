"""`/v1/ledgers` in particle-api-js's shapes (createLedger ... getLedgerInstanceVersion).

A ledger here has exactly one instance, the owner's, at scope value `owner`
(`/v1/ledgers/{name}/instances/owner`): Particle's product and device scopes
have no meaning without devices. Definitions travel as `{"ledger": {...}}`,
instances as `{"instance": {...}}`; `PUT .../instances/owner?set_mode=Merge`
replaces top-level keys, `Replace` (the default) the whole object. Archiving
deletes the ledger with its data and versions.
"""

from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.http.models import Strict
from runtime.http.routing import Actor, Org, Svc, route
from store.errors import InvalidInput, NotFound
from store.ledgers import LedgerRecord

SCOPE_VALUE = "owner"  # the one instance of every ledger


class LedgerFields(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Particle's scope, direction ... mean nothing here
    name: str | None = Field(default=None, description="Lower-case letters, digits and dashes, at most 32")
    description: str = ""


class LedgerIn(Strict):
    ledger: LedgerFields


class InstanceFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: dict[str, Any] = Field(description="One JSON object, at most 16 KiB as JSON")


class InstanceIn(Strict):
    instance: InstanceFields


SetMode = Annotated[
    Literal["Replace", "Merge", "replace", "merge"], Query(description="Replace (default) or Merge (top-level keys)")
]


def definition(record: LedgerRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "description": record.description,
        "scope": "Owner",
        "direction": "CloudOnly",
        "archived": False,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def instance(record: LedgerRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "scope": {"type": "Owner", "value": SCOPE_VALUE},
        "size_bytes": record.size_bytes,
        "data": record.data,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _scope(service: Any, actor: Any, org: str | None, name: str, scope_value: str) -> LedgerRecord:
    """The ledger, once the caller may see it (403/404 first), at the one scope value."""
    record: LedgerRecord = service.get_ledger(actor, name, org)
    if scope_value != SCOPE_VALUE:
        raise NotFound(f"ledger {name} has one instance, at scope value {SCOPE_VALUE!r}")
    return record


@route("POST", "/ledgers", status_code=201, tags=["ledgers"])
def create_ledger(body: LedgerIn, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    """Create a ledger (empty: `updated_at` null, data `{}`)."""
    if body.ledger.name is None:
        raise InvalidInput("ledger.name: a name is required")
    return {"ledger": definition(service.create_ledger(actor, body.ledger.name, body.ledger.description, org))}


@route("GET", "/ledgers", tags=["ledgers"])
def list_ledgers(service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    ledgers = [definition(r) for r in service.list_ledgers(actor, org)]
    return {"ledgers": ledgers, "meta": {"page": 1, "per_page": len(ledgers), "total": len(ledgers)}}


@route("GET", "/ledgers/{name}", tags=["ledgers"])
def get_ledger(name: str, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    return {"ledger": definition(service.get_ledger(actor, name, org))}


@route("PUT", "/ledgers/{name}", tags=["ledgers"])
def update_ledger(name: str, body: LedgerIn, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    """Change the description (the name stays)."""
    if body.ledger.name not in (None, name):
        raise InvalidInput("ledger.name: a ledger cannot be renamed")
    return {"ledger": definition(service.describe_ledger(actor, name, body.ledger.description, org))}


@route("DELETE", "/ledgers/{name}", status_code=204, response_class=Response, tags=["ledgers"])
def archive_ledger(name: str, service: Svc, actor: Actor, org: Org) -> Response:
    """Archive: the ledger, its data and its versions are deleted."""
    service.archive_ledger(actor, name, org)
    return Response(status_code=204)


@route("GET", "/ledgers/{name}/instances", tags=["ledgers"])
def list_ledger_instances(name: str, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    return {"instances": [instance(service.get_ledger(actor, name, org))], "meta": {"page": 1, "total": 1}}


@route("GET", "/ledgers/{name}/instances/{scope_value}", tags=["ledgers"])
def get_ledger_instance(name: str, scope_value: str, service: Svc, actor: Actor, org: Org) -> dict[str, Any]:
    return {"instance": instance(_scope(service, actor, org, name, scope_value))}


@route("PUT", "/ledgers/{name}/instances/{scope_value}", tags=["ledgers"])
def set_ledger_instance(
    name: str, scope_value: str, body: InstanceIn, service: Svc, actor: Actor, org: Org, set_mode: SetMode = "Replace"
) -> dict[str, Any]:
    """Set the data: `set_mode=Replace` (default) or `Merge`; the replaced data becomes a version."""
    _scope(service, actor, org, name, scope_value)
    mode: Literal["replace", "merge"] = "merge" if set_mode.lower() == "merge" else "replace"
    return {"instance": instance(service.write_ledger(actor, name, mode, body.instance.data, org))}


@route("DELETE", "/ledgers/{name}/instances/{scope_value}", status_code=204, response_class=Response, tags=["ledgers"])
def delete_ledger_instance(name: str, scope_value: str, service: Svc, actor: Actor, org: Org) -> Response:
    """Empty the data (kept as a version); the ledger stays."""
    _scope(service, actor, org, name, scope_value)
    service.write_ledger(actor, name, "delete", None, org)
    return Response(status_code=204)


@route("GET", "/ledgers/{name}/instances/{scope_value}/versions", tags=["ledgers"])
def list_ledger_instance_versions(
    name: str,
    scope_value: str,
    service: Svc,
    actor: Actor,
    org: Org,
    replaced_before: str | None = None,
    replaced_after: str | None = None,
) -> dict[str, Any]:
    """The replaced data's versions, newest first (`replaced_at`, `size_bytes`), without data."""
    _scope(service, actor, org, name, scope_value)
    versions = service.ledger_versions(actor, name, org)
    if replaced_before is not None:
        versions = [v for v in versions if v["replaced_at"] < replaced_before]
    if replaced_after is not None:
        versions = [v for v in versions if v["replaced_at"] > replaced_after]
    return {"versions": versions}


@route("GET", "/ledgers/{name}/instances/{scope_value}/versions/{version}", tags=["ledgers"])
def get_ledger_instance_version(
    name: str, scope_value: str, version: str, service: Svc, actor: Actor, org: Org
) -> dict[str, Any]:
    _scope(service, actor, org, name, scope_value)
    if not version.isdigit() or len(version) > 18:
        raise NotFound(f"ledger {name} has no version {version[:20]!r}")
    found = service.ledger_version(actor, name, int(version), org)
    return {"instance": {"name": name, "scope": {"type": "Owner", "value": SCOPE_VALUE}, **found}}
