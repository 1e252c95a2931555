"""The console's web security: session cookie, CSRF and origin checks, response headers.

Threats and answers:

- Session theft: the cookie is a random id (`lrs_` + 256 bits), HttpOnly (no
  script reads it), SameSite=Strict (no other site's page sends it), Secure
  over https, Path=/; the store keeps only its hash.
- Cross-site request forgery: every state-changing request (POST) must come
  from this origin (`Origin` equal to ours, else `Sec-Fetch-Site` same-origin)
  and carry the session's CSRF token in its form. A request that fails either
  changes nothing and gets 403.
- Script injection: templates autoescape everything; the CSP allows scripts
  and styles from this origin only (no inline script, no inline style
  attributes), so even an unescaped string could not run.
- Clickjacking: `frame-ancestors 'none'` (and X-Frame-Options for old browsers).
- Leaks through caches and referrers: `Cache-Control: no-store`,
  `Referrer-Policy: no-referrer`.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.errors import PermissionDenied

COOKIE = "logic_session"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PAGE_HEADERS = {**HEADERS, "Cache-Control": "no-store"}


def cookie_options(request: Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/"}


def check_origin(request: Request) -> None:
    """Refuse a state-changing request that another site's page could have sent.

    Under `Referrer-Policy: no-referrer` a browser sends `Origin: null` on every form POST,
    its own included (Fetch: "append a request Origin header"), so "null" says nothing:
    then `Sec-Fetch-Site` decides (a sandboxed or foreign page's POST is "cross-site")."""
    origin = request.headers.get("origin")
    ours = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != "null":
        if origin != ours:
            raise PermissionDenied("cross-site request refused")
        return
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise PermissionDenied("cross-site request refused")


def check_csrf(expected: str, given: object) -> None:
    if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise PermissionDenied("the form is out of date or was not sent by this console: reload the page")


# Every JSON API answer: never cached (a listing of secrets' metadata, a run record, a token
# check must not sit in a proxy's or browser's cache) and never sniffed as something else.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class SecurityHeaders:
    """The headers above on every response outside the JSON API (console pages, static
    files, /docs); API_HEADERS on the API's own answers (/v1)."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._page = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        self._api = [(k.lower().encode(), v.encode()) for k, v in API_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = self._api if scope["path"].startswith("/v1/") else self._page

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in raw if name not in present
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
