"""Every HTTP error answer: `{"error": "...", "error_description": "..."}` (the same text:
our clients read `error`, Particle's read `error_description`) with its status, in one place.

LogicErrors carry their status (store/errors.py); Unauthorized adds the
WWW-Authenticate challenge, anything with a retry_after a Retry-After. A 429
goes out after LOGIC_REFUSAL_HOLD_MS (`hold_refusal`): a client that does not wait for
Retry-After and asks again at once (a device's retry loop, a flooding script) gets a
few refusals a second per connection instead of one per round trip, and the server's
CPU goes to the work it accepted (ingest benchmark, one owner flooding its full queue
with 8 clients: 1.29-1.32x the events accepted and run, 0.77x the server CPU per event,
holds of 50 and 250 ms alike). The hold is a sleep on the event loop: it holds
the refused request's connection, never a thread or another request. A
malformed body is 400 (not JSON) or 422 (one readable line per problem, never
the input); FastAPI's 404/405 say what to do. The publish fast path renders
its errors with the same functions, so the two paths cannot drift.
Log lines escape whatever in them came from the request (`printable`).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Mapping

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from store.errors import LogicError, TooManyRequests, Unauthorized

log = logging.getLogger("logic.http")

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="logic-runtime"'}


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_description": message}, status_code=status, headers=headers)


async def logic_error_handler(request: Request, exc: LogicError) -> JSONResponse:
    await hold_refusal(exc, request.app.state.service.settings.refusal_hold_ms)
    return logic_error_response(exc, request.method, request.scope["path"])  # not url.path, which drops CR/LF


async def hold_refusal(exc: LogicError, hold_ms: int) -> None:
    """Wait `hold_ms` before a 429 is answered (see the module docstring)."""
    if hold_ms and isinstance(exc, TooManyRequests):
        await asyncio.sleep(hold_ms / 1000)


def logic_error_response(exc: LogicError, method: str, path: str) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        return error(exc.status, exc.message, WWW_AUTHENTICATE)
    if exc.status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, printable(method), printable(path), printable(exc.message))
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error(exc.status, exc.message, headers)


def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """One readable line per problem, naming the field. Never the input: pydantic keeps it
    in each error, and in a secret's body it is the secret value."""
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return error(400, f"request body is not valid JSON: {reason}")
        loc = [str(p) for p in err.get("loc", ())]
        if loc == ["body"] and err.get("type") == "missing":
            return error(422, "a JSON request body is required")
        where = ".".join(loc[1:]) if len(loc) > 1 else ("request body" if loc == ["body"] else ".".join(loc))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return error(422, "; ".join(problems) or "invalid request")


NOT_FOUND_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found · logic-runtime</title>'
    '<link rel="stylesheet" href="/static/console.css"></head><body><main id="main" class="narrow">'
    '<h1>Not found</h1><p>There is no such page. <a href="/">Back to the console</a>.</p></main></body></html>'
)


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404 and not request.scope["path"].startswith("/v1/") and _wants_html(request):
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404)  # a browser on a console URL that does not exist
    if exc.status_code == 404:
        message = "no such API route"
    elif exc.status_code == 405:
        # Each method of a path is its own route, and Starlette's Allow names only the first one's.
        allowed = ", ".join(
            sorted(
                {
                    m
                    for r in request.app.routes
                    if r.matches(request.scope)[0] != Match.NONE
                    for m in getattr(r, "methods", None) or ()
                }
            )
        )
        return error(405, f"method {request.method} is not allowed here (allowed: {allowed})", {"Allow": allowed})
    else:
        message = str(exc.detail)
    return error(exc.status_code, message, exc.headers)


def printable(text: object) -> str:
    """Request-derived text made safe for one log line.

    Threat: a path with %0a (decoded to a newline), a CR or an ANSI escape forges or
    hides log lines. Every character that is not printable (controls, line and
    paragraph separators, bidi overrides) and the backslash become Python escapes,
    so the line stays one line and reads back unambiguously."""
    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch != "\\" else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def frames(exc: BaseException | None) -> str:
    """A traceback without exception messages (see InternalErrors)."""
    parts = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(
            "".join(traceback.format_tb(exc.__traceback__)) + f"{type(exc).__module__}.{type(exc).__qualname__}"
        )
        exc = exc.__cause__ or exc.__context__
    return "\n--- caused by / during ---\n".join(reversed(parts))


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")
