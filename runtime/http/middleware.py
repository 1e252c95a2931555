"""The ASGI middleware around the API: body limit, the 500 guard, the in-flight count.

Order (outermost first): NulInUrl, BodyLimit, InternalErrors, CountRequests, then
the publish fast path, then FastAPI.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.http.errors import error, frames, log, printable


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class BodyLimit:
    """413 for a body over `max_bytes`: by Content-Length up front, and by counting
    what actually arrives (a chunked or lying client sends no honest length)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await error(400, "invalid Content-Length header")(scope, receive, send)
            if declared > self.max_bytes:
                return await error(413, BodyTooLarge(self.max_bytes).detail)(scope, receive, send)
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI passes HTTPExceptions to http_error_handler
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await error(413, exc.detail)(scope, receive, send)


class NulInUrl:
    """400 for a URL whose path or query holds a NUL character (%00).

    No name, id or cursor has one, and the backends disagreed on it: SQLite looked the text
    up (404), PostgreSQL refused to (its text cannot hold a NUL: 422). Refused here, before
    any route, both answer the same."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            return await error(400, "the URL holds a NUL character (%00): no name, id or cursor has one")(
                scope, receive, send
            )
        await self.app(scope, receive, send)


class InFlight:
    """How many HTTP requests are under way (read from other threads: a hint, no lock)."""

    def __init__(self) -> None:
        self.count = 0

    def busy(self) -> bool:
        return self.count > 0


class CountRequests:
    """Keeps an InFlight count, so the worker pool knows when this process has other work
    for the CPU (WorkerPool.others_busy)."""

    def __init__(self, app: ASGIApp, counter: InFlight):
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.counter.count += 1  # only the event loop's thread changes it
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.count -= 1


class InternalErrors:
    """Anything unexpected: a bare 500 for the client, the traceback in the server log.

    Threat: an exception's message may quote its input -- a request body with a secret
    value in it. The log gets the frames and the exception types, never the messages.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except BodyTooLarge:
            raise  # BodyLimit, outside, answers 413 (the publish fast path reads the body itself)
        except Exception as exc:
            log.error(
                "internal error on %s %s:\n%s",
                printable(scope.get("method")),
                printable(scope.get("path")),
                frames(exc),
            )
            if started:
                raise
            await error(500, "internal error")(scope, receive, send)
