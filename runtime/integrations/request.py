"""The HTTP request a webhook spec renders to for one event.

The body is `json` (an object whose strings are rendered, or one template
sent as is with Content-Type application/json), `form`, or `body`. Particle's
default fields `event`, `data`, `published_at`, `coreid` (empty: no devices
here) go with every request unless `noDefaults` is true, as its console's
"include default data" does: a POST, PUT or PATCH with none of the three sends
them as a form; a `json` object or a `form` gets them beside its own fields
(its own win); a GET or DELETE, which sends no body, gets them in the query
string beside `query`'s own. A `body` or a one-template `json` is sent as is.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.integrations.spec import HEADER_NAME, WebhookSpec
from runtime.integrations.templates import Budget, Namespace, render, render_json
from runtime.integrations.variables import default_fields
from store.errors import InvalidInput

_BODY_METHODS = ("POST", "PUT", "PATCH")
_BAD_HEADER_CHARS = re.compile(r"[\r\n\x00]")


@dataclass
class RenderedRequest:
    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str]
    json_: Any = None
    form: dict[str, str] | None = None
    body: str | None = None
    auth: tuple[str, str] | None = field(default=None, repr=False)
    verify: bool = True  # TLS certificate checks (Particle's rejectUnauthorized)

    def build(self, client: httpx.Client) -> httpx.Request:
        """The httpx request; InvalidInput for a URL or header that rendering broke."""
        headers: dict[str, str | bytes] = {}
        for name, value in self.headers.items():
            # Threat: event data with CR LF in a header would smuggle headers (or a request).
            if _BAD_HEADER_CHARS.search(name) or _BAD_HEADER_CHARS.search(value):
                raise InvalidInput(
                    f"header {_BAD_HEADER_CHARS.sub('', name)!r} contains a line break or NUL after rendering"
                )
            if not HEADER_NAME.fullmatch(name):
                raise InvalidInput(f"header name {name!r} is not valid after rendering")
            headers[name] = value if value.isascii() else value.encode("utf-8")  # httpx: ASCII str only
        if self.auth is not None:
            # Built here, not by httpx auth, so the log shows the header that was sent (redacted).
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        if not any(h.lower() == "accept-encoding" for h in headers):
            headers["Accept-Encoding"] = "identity"  # no decompression bombs
        try:
            url = httpx.URL(self.url)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise InvalidInput("the rendered url is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidInput("the rendered url must be http:// or https:// with a host")
        kwargs: dict[str, Any] = {}
        if self.json_ is not None:
            kwargs["json"] = self.json_
        elif self.form is not None:
            kwargs["data"] = self.form
        elif self.body is not None:
            kwargs["content"] = self.body.encode("utf-8")
        try:
            # httpx takes str or bytes per header value; its HeaderTypes names all-str or all-bytes mappings only.
            return client.build_request(self.method, url, params=self.query or None, headers=headers, **kwargs)  # type: ignore[arg-type]
        except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
            raise InvalidInput("the rendered request is not valid (url, query or headers)") from None


def render_request(spec: WebhookSpec, namespace: Namespace, budget: Budget) -> RenderedRequest:
    """Every field rendered once; TooLarge when they would render more than `budget`."""

    def r(template: str) -> str:
        return render(template, namespace, budget)

    headers = {r(k): r(v) for k, v in spec.headers.items()}
    defaults = {} if spec.no_defaults else default_fields(dict(namespace.variables))
    query = {r(k): r(v) for k, v in spec.query.items()}
    json_ = form = body = None
    if isinstance(spec.json_, str):
        # Particle's json as one template: what it renders need not be JSON until then (`{"t": {{t}}}`).
        body = r(spec.json_)
        if not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "application/json"
    elif spec.json_ is not None:
        json_ = render_json(spec.json_, namespace, budget)
        if isinstance(json_, dict):
            json_ = {**defaults, **json_}
    elif spec.form is not None:
        form = {**defaults, **{r(k): r(v) for k, v in spec.form.items()}}
    elif spec.body is not None:
        body = r(spec.body)
    elif spec.method in _BODY_METHODS:
        form = defaults or None
    else:
        query = {**defaults, **query}
    return RenderedRequest(
        method=spec.method,
        url=r(spec.url),
        headers=headers,
        query=query,
        json_=json_,
        form=form,
        body=body,
        auth=(r(spec.auth.username), r(spec.auth.password)) if spec.auth is not None else None,
        verify=spec.reject_unauthorized,
    )
