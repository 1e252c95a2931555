"""POST /v1/events and /v1/orgs/{org}/events without FastAPI's per-request machinery.

Publishing is the hot path of `logic serve`: devices and services post events
as fast as they come. Through FastAPI a publish cost about 460 us of server
CPU on 2 cores (routing, dependency solving, validation, the anyio thread hop,
response serialisation) for about 60 us of work in the service. This ASGI
wrapper answers the common case itself -- a JSON body that validates as
`EventIn`, sent with a valid token -- by handing the same service method to the
bus's group-commit writer (events/publish_writer.py), which commits it with the
publishes waiting beside it and wakes the event loop once per batch (no thread
hop per publish), and answering with the response the route would give.

Anything else (no token or a bad one, another content type, a body that is not
JSON or does not validate, another method) goes to the FastAPI route, with
the body replayed, so every such error is the documented route's own. That
includes an address the failed-authentication throttle refuses (its 429 is the
route's) and a token that fails: the route counts the failure, once. The
route stays in the OpenAPI docs. Errors the service raises are answered by the
same function as the app's LogicError handler (errors.py). The body limit and
the 500 guard (middleware.py) wrap this as they wrap FastAPI.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Literal, cast

from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.http.auth_throttle import AuthThrottle, client_address
from runtime.http.errors import hold_refusal, logic_error_response
from runtime.http.models import EventAccepted, EventIn
from runtime.service import Service
from store.errors import LogicError

_ORG_EVENTS = re.compile(r"^/v1/orgs/([^/]+)/events$")


class PublishFastPath:
    """ASGI middleware answering a well-formed, authenticated publish itself."""

    def __init__(self, app: ASGIApp, service: Service, throttle: AuthThrottle):
        self.app = app
        self.service = service
        self.throttle = throttle  # the app's: only consulted here, the route counts failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        org = _target(scope)
        if org is False:
            return await self.app(scope, receive, send)
        body, complete = await _read_body(receive)
        if not complete:  # the client went away mid-body: nothing to answer
            return
        request = _parse(scope, body)
        actor = None
        if request is not None and not self.throttle.retry_after(client_address(scope)):
            try:
                actor = self.service.authenticate(request[0])  # one indexed read, as get_actor does
            except LogicError:
                actor = None
        if actor is None:  # the route gives the canonical answer, whatever the problem
            return await self.app(scope, _replay(body, receive), send)
        event = cast("tuple[str, EventIn]", request)[1]  # an actor means the request parsed
        publish = functools.partial(self.service.publish_event, actor, event.name, event.data, org)
        try:
            accepted = await self.service.bus.writer.submit_async(publish)
        except LogicError as exc:  # refused, or its batch could not commit (then nothing was written)
            await hold_refusal(exc, self.service.settings.refusal_hold_ms)
            response = logic_error_response(exc, scope["method"], scope["path"])
        else:
            response = JSONResponse(EventAccepted.model_validate(accepted).model_dump(mode="json"), status_code=202)
        await response(scope, receive, send)


def _target(scope: Scope) -> str | None | Literal[False]:
    """None for /v1/events, the org for /v1/orgs/{org}/events, False for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path = scope["path"]
    if path == "/v1/events":
        return None
    match = _ORG_EVENTS.match(path)
    return match.group(1) if match else False


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _parse(scope: Scope, body: bytes) -> tuple[str, EventIn] | None:
    """(token, event) for the common case; None for anything the route should judge."""
    token = content_type = None
    for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
        if name == b"authorization" and token is None:
            # As fastapi.security.HTTPBearer: "<scheme> <credentials>", scheme in any case.
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            token = credentials if scheme.lower() == "bearer" and credentials else ""
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    if not token or not body or content_type is None:  # FastAPI reads no JSON without a type
        return None
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        # As FastAPI: Starlette's Request.json() (json.loads of the bytes), then validation.
        return token, EventIn.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
