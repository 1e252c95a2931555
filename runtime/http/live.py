"""The live streams as Server-Sent Events: an owner's events (in Particle's format, so
`particle subscribe` reads them), a function's run records, an integration's logs.

A stream starts at the moment of connection (nothing older), sends `:ok` at once and
a keep-alive comment every `LOGIC_STREAM_KEEPALIVE_S` (particle-cli reconnects after
13 s of silence). It ends when its reader falls behind by more than
`LOGIC_STREAM_BUFFER_EVENTS` (the client reconnects; publishing never waits), when the
client stops reading for three keep-alive periods, or when the server stops. Each
owner holds at most `LOGIC_STREAMS_PER_OWNER` open streams (429 past it). What streams
carry was redacted before it was stored: runs and webhook logs show `[[SENSITIVE]]`,
as their listings do.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import StreamingResponse
from starlette.types import Send

from runtime.events.streams import EVENTS, RUNS, WEBHOOK_LOGS, Item, Reader
from runtime.http.routing import Actor, Org, Ref, Svc, route
from runtime.service import Service
from store.errors import NotFound

log = logging.getLogger("logic.http")
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # no proxy buffering either
Prefix = Annotated[str, Path(description="Only events whose name starts with this")]
STREAM_DOC = {
    "description": "A text/event-stream: `event: NAME` and `data: JSON` per item, comments as keep-alives",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def frame(event: str, body: dict[str, Any]) -> bytes:
    # One `data:` line: json.dumps escapes every newline, so no field can end the frame early.
    return f"event: {event}\ndata: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def event_frame(item: Item) -> bytes:
    """Particle's frame: `event: NAME` + `{"data", "ttl", "published_at", "coreid"}` (+ our id, source)."""
    return frame(item.key, {k: v for k, v in item.body.items() if k != "name"})


def record_frame(event: str) -> Callable[[Item], bytes]:
    return lambda item: frame(event, item.body)


async def _sse(service: Service, reader: Reader, render: Callable[[Item], bytes]) -> AsyncIterator[bytes]:
    keepalive = service.settings.stream_keepalive_s
    try:
        yield b":ok\n\n"
        while True:
            items = await reader.next(keepalive)
            if items is None:
                yield b":end: reconnect to go on from now\n\n"
                return
            if not items:
                yield b":\n\n"
            # One write per frame: a client that stops reading holds at most one frame beyond
            # the server's write buffer, never a whole batch.
            for item in items:
                yield render(item)
    finally:
        service.streams.close(reader)


class LiveStreamResponse(StreamingResponse):
    """A stream whose client must keep reading: a write the client has not taken within
    `send_timeout` (its socket and the server's buffers are full) ends the stream, so a
    stalled client holds no reader, no buffer and no place in its owner's share."""

    def __init__(self, content: AsyncIterator[bytes], *, send_timeout: float, **kwargs: Any):
        super().__init__(content, **kwargs)
        self.body_iterator = content
        self.send_timeout = send_timeout

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        stream = self.body_iterator
        try:
            async for chunk in stream:
                try:
                    message = {"type": "http.response.body", "body": chunk, "more_body": True}
                    await asyncio.wait_for(send(message), self.send_timeout)
                except TimeoutError:
                    # Left incomplete on purpose: the server closes the connection.
                    log.info("event=stream_dropped reason=client_not_reading timeout_s=%g", self.send_timeout)
                    return
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator (_sse)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def open_stream(service: Service, owner: str, topic: str, match: Callable[[str], bool], render: Callable) -> Any:
    """The SSE response for the owner's `topic` items whose key `match`es (the console's too)."""
    reader = service.streams.open(owner, topic, match)  # 429 past the owner's share, before any byte is sent
    return LiveStreamResponse(
        _sse(service, reader, render),
        send_timeout=3 * service.settings.stream_keepalive_s,
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


def _by_prefix(prefix: str | None) -> Callable[[str], bool]:
    return (lambda name: name.startswith(prefix)) if prefix else (lambda name: True)


# events ------------------------------------------------------------------------------

_EVENTS = {"tags": ["events"], "response_class": StreamingResponse, "responses": {200: STREAM_DOC}}


@route("GET", "/devices/events", **_EVENTS)  # Particle's "my devices" path (`particle subscribe`)
@route("GET", "/events", **_EVENTS)
async def stream_events(service: Svc, actor: Actor, org: Org) -> Any:
    """The owner's events as they are published (Particle's `GET /v1/events`)."""
    return open_stream(service, service.owner_for(actor, org), EVENTS, _by_prefix(None), event_frame)


@route("GET", "/devices/events/{prefix:path}", **_EVENTS)  # `particle subscribe PREFIX`
@route("GET", "/events/{prefix:path}", **_EVENTS)
async def stream_events_prefix(prefix: Prefix, service: Svc, actor: Actor, org: Org) -> Any:
    """The owner's events whose name starts with `prefix` (`particle subscribe --all PREFIX`)."""
    return open_stream(service, service.owner_for(actor, org), EVENTS, _by_prefix(prefix), event_frame)


# runs and webhook logs ---------------------------------------------------------------


@route(
    "GET",
    "/logic/functions/{function_id}/runs/stream",
    tags=["functions"],
    response_class=StreamingResponse,
    responses={200: STREAM_DOC},
)
async def stream_runs(function_id: Ref, service: Svc, actor: Actor, org: Org) -> Any:
    """Each new run record of the function as it is stored (`event: run`), redacted as stored."""
    fn = service.get_function(actor, function_id, org)  # 404 for another owner's
    return open_stream(service, fn.owner, RUNS, fn.id.__eq__, record_frame("run"))


@route(
    "GET",
    "/integrations/{integration_id}/logs/stream",
    tags=["integrations"],
    response_class=StreamingResponse,
    responses={200: STREAM_DOC},
)
async def stream_webhook_logs(integration_id: Ref, service: Svc, actor: Actor, org: Org) -> Any:
    """Each new request log of the integration (`event: log`), secrets as [[SENSITIVE]]."""
    integration = service.get_integration(actor, integration_id, org)
    return open_stream(service, integration.owner, WEBHOOK_LOGS, integration.id.__eq__, record_frame("log"))


@route("GET", "/devices/{device_id}/events", tags=["events"], include_in_schema=False)
async def device_stream(device_id: str, service: Svc, actor: Actor, org: Org) -> Any:
    service.owner_for(actor, org)  # 403 for a foreign org first, as everywhere
    raise NotFound(f"no device {device_id!r}: this server has no devices; subscribe without --device")
