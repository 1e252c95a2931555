"""`/v1/audit/changes` (and the org twin): who changed what, when and from where, a page
at a time; `/v1/audit/verify`: the chain's check, for admins (`logic audit verify`).

A caller sees only the changes of the owner asked for (their sandbox, or an org they
belong to); an admin's sandbox listing adds the machine-wide rows (users, keys).
"""

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from runtime import paging
from runtime.http.routing import ERRORS, ROUTES, Actor, Cursor, Limit, Org, Svc, route


class ChangeOut(BaseModel):
    id: int
    at: str
    actor: str = Field(description="The user who made the change")
    via: str = Field(description="From where: cli, token:ID (an API token), console:TOKEN_ID (a console session)")
    owner: str | None = Field(description="user:NAME or org:NAME; null for machine-wide changes (users, keys)")
    action: str = Field(examples=["secret.update"])
    target_kind: str = Field(examples=["secret"])
    target: str = Field(examples=["API_KEY"])
    details: dict[str, Any] = Field(description="Ids, names and version numbers: never a value")


class ChangeList(BaseModel):
    changes: list[ChangeOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last one")


class Head(BaseModel):
    id: int
    mac: str


class VerificationOut(BaseModel):
    ok: bool
    rows: int = Field(description="Rows checked (after the checkpoint, if any)")
    problem: str | None = Field(description="What is wrong, naming the first bad row")
    first_bad_id: int | None
    head: Head | None = Field(description="The newest row's id and MAC, to keep elsewhere (null when broken)")
    checkpoint: int | None = Field(description="Rows up to this id were pruned; checking started after it")
    anchored: bool | None = Field(description="With ?head=: it was found (false: pruned since)")


@route("GET", "/audit/changes", response_model=ChangeList, tags=["audit"])
def list_changes(
    service: Svc,
    actor: Actor,
    org: Org,
    secret: Annotated[str | None, Query(max_length=64, description="Only changes of this secret")] = None,
    function: Annotated[str | None, Query(max_length=128, description="Only changes of this function")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Who created, updated, restored or deleted which secret, deployed or deleted which function, ...:
    newest first, a page at a time (`logic audit --changes`)."""
    rows = service.list_changes(actor, org, secret=secret, function=function, limit=limit, cursor=cursor)
    return {
        "changes": [c.to_json() for c in rows],
        "next_cursor": paging.next_cursor(rows, limit, lambda c: (c.id,)),
    }


def verify_changes(
    service: Svc,
    actor: Actor,
    head: Annotated[str | None, Query(max_length=100, description="ID:MAC of a head kept from earlier")] = None,
) -> dict[str, Any]:
    """Check the change audit's HMAC chain (admins): 200 with `ok` false names the first bad row."""
    return service.verify_changes(actor, head).to_json()


# Machine-wide (the chain holds every owner's rows), so no org twin: not declared with `route`.
ROUTES.append(
    (
        "/v1/audit/verify",
        verify_changes,
        {"methods": ["GET"], "response_model": VerificationOut, "tags": ["audit"], "responses": ERRORS},
    )
)
