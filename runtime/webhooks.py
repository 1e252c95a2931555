"""`NAME.webhook.json`: the spec of a webhook, its templates, and sending it.

Templates
---------

Every configurable field (url, query keys and values, header names and
values, every string and key inside `json`, form keys and values, body,
auth username and password) is a Mustache template, rendered with chevron.
A template may use variables only, `{{{NAME}}}` (as is) or `{{NAME}}` (HTML
escaped), from one flat namespace:

- a declared secret: `{{{API_KEY}}}`;
- an event variable: EVENT_NAME, EVENT_DATA, EVENT_PUBLISHED_AT,
  EVENT_SOURCE, EVENT_ID, and Particle's names for them (PARTICLE_EVENT_NAME,
  PARTICLE_EVENT_VALUE, PARTICLE_PUBLISHED_AT, PARTICLE_DEVICE_ID);
- a top-level field of the event data when it parses as a JSON object
  (strings as they are, other values as compact JSON text, null as "").

Names in secret-name syntax (`^[A-Z_][A-Z0-9_]*$`) are reserved for secrets
and event variables: such a name that is neither declared nor an event
variable is refused when the integration is created (a typo'd secret would
otherwise send an empty credential), and a JSON data field with such a name
cannot be referenced (event data must never shadow a secret).

Refused, because a template is configuration, not a program: partials
(`{{> x}}` would make chevron read x.mustache from the server's disk),
sections and inverted sections, and dotted names (chevron resolves them with
getattr on Python objects). Values are substituted once and never rendered
again, so event data that contains `{{{API_KEY}}}` is sent literally.

When an integration declares secrets, the URL's scheme and host part (up to
the first `/`, `?` or `#`) may not use event variables: otherwise whoever
publishes the event chooses where the secrets are sent.

Sending
-------

A POST, PUT or PATCH without json, form or body sends the event itself as
JSON (`{"event", "data", "published_at", "source"}`), as Particle does.

One request per attempt, no redirects followed (a 3xx is an error: following
one would resend the body, and any secret in it, to a host the spec does not
name), a deadline per attempt (httpx's timeout is per read, so a server
trickling bytes is cut off too), at most `retries` more attempts after a
connection error or a 5xx, with exponential backoff; a timeout after the
request went out is not retried (the server may have acted on it). The
response body is read up to a cap. Environment proxies and ~/.netrc are ignored (trust_env=False):
netrc would add the server user's own credentials to a user-chosen host.

Destinations
------------

Threat: SSRF, a tenant's webhook reading the server's own network (loopback
services, cloud metadata at 169.254.169.254, the LAN) and getting the answer
back as `hook-response`. Unless the operator sets LOGIC_WEBHOOK_ALLOW_PRIVATE,
only public addresses are connected to. The check runs where the connection
is made (`GuardedTransport`), not before the request: the guard resolves the
name itself, refuses the whole answer if any address in it is not public,
connects to a checked address (never to the name, which would be resolved
again: DNS rebinding), and checks the socket's peer address once connected.
So every connection, every retry, and every address a name resolves to is
checked, in every spelling (`2130706433`, `0177.0.0.1`, `::ffff:127.0.0.1`,
`0.0.0.0`). TLS still verifies the certificate against the URL's host name,
sent as SNI. A refusal is final (not retried) and names the address only,
never the URL, which may carry a secret.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import chevron
import httpcore
import httpx
from chevron.tokenizer import tokenize
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from store.errors import DeployError, InvalidInput
from store.secrets import NAME_PATTERN, check_declared

from .manifest import check_resource_name, read_json_file

SPEC_SUFFIX = ".webhook.json"

EVENT_VARIABLES = {
    "EVENT_NAME": "name",
    "EVENT_DATA": "data",
    "EVENT_PUBLISHED_AT": "published_at",
    "EVENT_SOURCE": "source",
    "EVENT_ID": "id",
    "PARTICLE_EVENT_NAME": "name",
    "PARTICLE_EVENT_VALUE": "data",
    "PARTICLE_PUBLISHED_AT": "published_at",
    "PARTICLE_DEVICE_ID": "source",
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_VARIABLE_TAGS = ("variable", "no escape")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_CHARS = re.compile(r"[\r\n\x00]")


# -- templates ----------------------------------------------------------------


class _NoPartials(dict):
    """Every partial is the empty template, whatever chevron asks for."""

    def __missing__(self, key: str) -> str:
        return ""


_NO_PARTIALS = _NoPartials()


@functools.lru_cache(maxsize=1024)
def _tokens(template: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(tokenize(template))
    except chevron.ChevronError as exc:
        raise ValueError("invalid template: " + " ".join(str(exc).split())) from None


def template_names(template: str) -> list[str]:
    """The variable names a template uses; ValueError for anything but variables."""
    names = []
    for tag, key in _tokens(template):
        if tag in ("literal", "set delimiter"):
            continue
        if tag == "partial":
            raise ValueError(f"partials ({{{{> {key}}}}}) are not supported")
        if tag in ("section", "inverted section", "end"):
            raise ValueError(f"sections ({{{{#{key}}}}}) are not supported: use {{{{{{NAME}}}}}} variables")
        if tag not in _VARIABLE_TAGS:
            raise ValueError(f"unsupported template tag {tag!r}")
        if key == "." or "." in key:
            raise ValueError(f"{{{{{{{key}}}}}}}: dotted names are not supported; "
                             "top-level fields of JSON event data only")
        names.append(key)
    return names


def render(template: str, variables: dict[str, str]) -> str:
    """Render once; the values are never rendered again."""
    if "{{" not in template:
        return template
    template_names(template)  # a stored spec is checked again: nothing but variables reaches chevron
    # partials_path=None: no file is ever read; _NO_PARTIALS: not even a dict lookup can succeed.
    return chevron.render(list(_tokens(template)), variables, partials_path=None,
                          partials_dict=_NO_PARTIALS, warn=False)


def event_variables(event: dict, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The namespace of a render: JSON data fields, then event variables, then secrets (last wins)."""
    variables: dict[str, str] = {}
    data = event.get("data")
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                if NAME_PATTERN.fullmatch(key) or "." in key:
                    continue  # the reserved namespace: data may not shadow a secret or event variable
                variables[key] = _text(value)
    for name, attr in EVENT_VARIABLES.items():
        value = event.get(attr)
        variables[name] = "" if value is None else str(value)
    variables.update(secrets or {})
    return variables


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- the spec -----------------------------------------------------------------


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str = ""


class WebhookSpec(BaseModel):
    """NAME.webhook.json, checked; `json` is the `json_` attribute (BaseModel has a .json)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    event: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=8192)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    form: dict[str, str] | None = None
    body: str | None = None
    auth: BasicAuth | None = None
    secrets: list[str] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_resource_name(value)

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("event prefix must not contain control characters")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"(?i)https?://[^/?#]", value):
            raise ValueError("url must start with http:// or https:// and a host")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[str]) -> list[str]:
        for value in check_declared(values):
            if value in EVENT_VARIABLES:
                raise ValueError(f"{value} is an event variable, not a secret name")
        return values

    @model_validator(mode="after")
    def _templates(self) -> "WebhookSpec":
        problems = []
        given = [f for f, v in (("json", self.json_), ("form", self.form), ("body", self.body)) if v is not None]
        if len(given) > 1:
            problems.append(f"use at most one of json, form and body, not {' and '.join(given)}")
        if self.auth is not None and any(h.lower() == "authorization" for h in self.headers):
            problems.append("auth and an Authorization header are exclusive: use one")
        for header in self.headers:
            if "{{" not in header and not _HEADER_NAME.fullmatch(header):
                problems.append(f"headers: {header!r} is not a valid header name")
        declared = set(self.secrets)
        for where, template in self.templates():
            try:
                names = template_names(template)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            for name in names:
                if NAME_PATTERN.fullmatch(name) and name not in declared and name not in EVENT_VARIABLES:
                    problems.append(
                        f"{where}: {{{{{{{name}}}}}}} is neither a declared secret nor an event variable: "
                        f"add {name} to \"secrets\" (names in secret-name syntax are reserved)")
        if declared and not problems and self._origin_uses(lambda name: name not in declared):
            problems.append("url: the scheme and host may not use event variables in an integration "
                            "that declares secrets (the publisher would choose where they go)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _origin_uses(self, test: Callable[[str], bool]) -> bool:
        """Whether a variable that passes `test` lands in the url's scheme and host once rendered."""
        markers = {name: f"\x00{i}\x00" for i, name in enumerate(template_names(self.url))}
        origin = re.match(r"[^/?#]*//[^/?#]*", render(self.url, markers))
        text = origin.group() if origin else ""
        return any(marker in text and test(name) for name, marker in markers.items())

    def templates(self) -> Iterator[tuple[str, str]]:
        """(where, template) for every configurable string."""
        yield "url", self.url
        for key, value in self.query.items():
            yield f"query.{key}", key
            yield f"query.{key}", value
        for key, value in self.headers.items():
            yield f"headers.{key}", key
            yield f"headers.{key}", value
        yield from _json_templates("json", self.json_)
        for key, value in (self.form or {}).items():
            yield f"form.{key}", key
            yield f"form.{key}", value
        if self.body is not None:
            yield "body", self.body
        if self.auth is not None:
            yield "auth.username", self.auth.username
            yield "auth.password", self.auth.password

    def used_secrets(self) -> list[str]:
        """Declared secrets that some template references, in declaration order."""
        used = {name for _, t in self.templates() for name in template_names(t)}
        return [name for name in self.secrets if name in used]

    def to_json(self) -> dict:
        """The NAME.webhook.json form: optional fields only when given."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        for key in ("headers", "query"):
            if not data[key]:
                del data[key]
        return data


def _json_templates(where: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{where}.{key}", key
            yield from _json_templates(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_templates(f"{where}[{i}]", item)


def _render_json(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, dict):
        return {render(k, variables): _render_json(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, variables) for v in value]
    return value


def parse_spec(data: object, *, filename: str = "webhook") -> WebhookSpec:
    """Validate spec JSON (already decoded); DeployError lists every problem."""
    if not isinstance(data, dict):
        raise DeployError([f"{filename}: expected a JSON object"])
    try:
        return WebhookSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{filename}: {loc}: {message}" if loc else f"{filename}: {message}")
        raise DeployError(problems) from None


def load_spec(path: Path | str) -> dict:
    """Read a NAME.webhook.json file into a dict (validated by the service)."""
    path = Path(path)
    _text, data = read_json_file(path)
    if not isinstance(data, dict):
        raise DeployError([f"{path.name}: expected a JSON object"])
    return data


# -- rendering a request --------------------------------------------------------


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

    def build(self, client: httpx.Client) -> httpx.Request:
        """The httpx request; InvalidInput for a URL or header that rendering broke."""
        headers: dict[str, str | bytes] = {}
        for name, value in self.headers.items():
            # Threat: event data with CR LF in a header would smuggle headers (or a request).
            if _BAD_HEADER_CHARS.search(name) or _BAD_HEADER_CHARS.search(value):
                raise InvalidInput(f"header {_BAD_HEADER_CHARS.sub('', name)!r} contains a line break "
                                   "or NUL after rendering")
            if not _HEADER_NAME.fullmatch(name):
                raise InvalidInput(f"header name {name!r} is not valid after rendering")
            headers[name] = value if value.isascii() else value.encode("utf-8")  # httpx: ASCII str only
        if self.auth is not None:
            # Built here, not by httpx auth, so the log shows the header that was sent (redacted).
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode("utf-8")).decode("ascii")
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
            return client.build_request(self.method, url, params=self.query or None, headers=headers, **kwargs)
        except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
            raise InvalidInput("the rendered request is not valid (url, query or headers)") from None


def render_request(spec: WebhookSpec, variables: dict[str, str]) -> RenderedRequest:
    def r(template: str) -> str:
        return render(template, variables)

    json_ = _render_json(spec.json_, variables) if spec.json_ is not None else None
    form = {r(k): r(v) for k, v in spec.form.items()} if spec.form is not None else None
    body = r(spec.body) if spec.body is not None else None
    if json_ is None and form is None and body is None and spec.method in _BODY_METHODS:
        # Particle's default body: the event itself.
        json_ = {"event": variables.get("EVENT_NAME", ""), "data": variables.get("EVENT_DATA", ""),
                 "published_at": variables.get("EVENT_PUBLISHED_AT", ""),
                 "source": variables.get("EVENT_SOURCE", "")}
    return RenderedRequest(
        method=spec.method,
        url=r(spec.url),
        headers={r(k): r(v) for k, v in spec.headers.items()},
        query={r(k): r(v) for k, v in spec.query.items()},
        json_=json_, form=form, body=body,
        auth=(r(spec.auth.username), r(spec.auth.password)) if spec.auth is not None else None,
    )


# -- the destination guard -------------------------------------------------------

_ALLOW_HINT = "set LOGIC_WEBHOOK_ALLOW_PRIVATE=true to allow it"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class _Refused(Exception):
    """The guard will not connect there. Not an httpcore error, so httpx passes it through
    untranslated and the sender can tell it from a connection failure (a refusal is final)."""


def address_refusal(text: str) -> str | None:
    """Why the numeric address `text` may not be connected to, or None if it is public."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 host (::ffff:127.0.0.1 is
        # loopback on a dual-stack socket), and Python calls 6to4 and NAT64 forms global.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.insert(0, embedded)
    for candidate in candidates:
        kind = _address_kind(candidate)
        if kind is not None:
            shown = text if candidate is address else f"{text} ({candidate})"  # as the resolver wrote it
            return f"destination {shown} is not a public address ({kind}); {_ALLOW_HINT}"
    return None


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for kind, flag in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("reserved", address.is_reserved), ("private", address.is_private)):
        if flag:
            return kind
    return None if address.is_global else "not globally routable"


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to addresses it has resolved and checked."""

    def __init__(self, *, allow_private: bool):
        self.allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            # The host name is left out: it is rendered, and may carry a secret.
            raise httpcore.ConnectError(f"cannot resolve the host name ({_short(exc)})") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)))
        if not addresses:
            raise httpcore.ConnectError("the host name resolves to no IP address")
        if not self.allow_private:
            # Threat: a name answering [public, 127.0.0.1] and counting on a fallback; the whole answer is refused.
            for address in addresses:
                refused = address_refusal(address)
                if refused:
                    raise _Refused(refused)
        failure: Exception = httpcore.ConnectError("no address could be connected")
        for address in addresses:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout("timed out")
            try:
                # A numeric host: the base class's create_connection does no DNS lookup of its own.
                stream = super().connect_tcp(address, port, remaining, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self._check_peer(stream)
            return stream
        raise failure

    def _check_peer(self, stream: httpcore.NetworkStream) -> None:
        """The address actually connected to, whatever resolved or routed it there."""
        if self.allow_private:
            return
        try:
            refused = address_refusal(stream.get_extra_info("socket").getpeername()[0])
        except (OSError, ValueError, AttributeError, IndexError):
            refused = "the connected peer address could not be checked"
        if refused:
            stream.close()  # before a byte of the request is written
            raise _Refused(refused)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with `GuardedBackend` making every connection.

    `ssl_context` defaults to httpx's own (certifi, hostname checks on): the TLS layer
    gets the URL's host name, so SNI and certificate checks are unchanged by connecting
    to an address.
    """

    def __init__(self, *, allow_private: bool, ssl_context: ssl.SSLContext | None = None):
        ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend, its pool does: the pool httpx built is replaced
        # before first use (tests/security/test_webhook_rebinding.py fails if this stops working).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private))


# -- sending --------------------------------------------------------------------


@dataclass
class SendOutcome:
    request: httpx.Request | None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    error: str | None = None
    retryable: bool = False  # a connection error: nothing (complete) reached the server
    attempts: int = 0
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


class _TooSlow(Exception):
    pass


class WebhookSender:
    """Sends rendered requests: bounded retries, no redirects, capped response reads.

    Connections go through `GuardedTransport`; a `transport` given here (a test double)
    replaces it, and with it the destination check.
    """

    def __init__(self, *, timeout_s: float, retries: int, max_body_bytes: int,
                 transport: httpx.BaseTransport | None = None, backoff_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, allow_private: bool = False):
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.max_body_bytes = max_body_bytes
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.allow_private = allow_private
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """Made on first use: loading CA certificates costs every CLI command ~35 ms otherwise."""
        with self._lock:
            if self._client is None:
                transport = self._transport or GuardedTransport(allow_private=self.allow_private)
                self._client = httpx.Client(transport=transport, timeout=httpx.Timeout(self.timeout_s),
                                            follow_redirects=False, trust_env=False,
                                            headers={"User-Agent": "logic-runtime-webhook"})
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def send(self, rendered: RenderedRequest) -> SendOutcome:
        started = time.monotonic()
        try:
            request = rendered.build(self.client)
        except InvalidInput as exc:
            return SendOutcome(None, error=exc.message)
        outcome = SendOutcome(request)
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            outcome = self._attempt(request)
            outcome.attempts = attempt + 1
            if not (outcome.retryable or (outcome.status is not None and outcome.status >= 500)):
                break
        outcome.duration_ms = round((time.monotonic() - started) * 1000, 3)
        return outcome

    def _attempt(self, request: httpx.Request) -> SendOutcome:
        deadline = time.monotonic() + self.timeout_s
        try:
            response = self.client.send(request, stream=True)
            try:
                body, truncated = self._read(response, deadline)
            finally:
                response.close()
            return SendOutcome(request, response.status_code, dict(response.headers), body, truncated)
        except _Refused as exc:
            return SendOutcome(request, error=str(exc))
        except httpx.ConnectTimeout:
            return SendOutcome(request, error=f"connection timed out after {self.timeout_s:g} s", retryable=True)
        except (httpx.TimeoutException, _TooSlow):
            return SendOutcome(request, error=f"timed out after {self.timeout_s:g} s")
        except httpx.ConnectError as exc:
            return SendOutcome(request, error=f"connection failed: {_short(exc)}", retryable=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return SendOutcome(request, error=f"connection broken: {_short(exc)}", retryable=True)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:
            return SendOutcome(request, error=f"request failed: {type(exc).__name__}: {_short(exc)}")

    def _read(self, response: httpx.Response, deadline: float) -> tuple[bytes, bool]:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"".join(chunks)[: self.max_body_bytes], True
            # Threat: a server trickling a byte per few seconds; httpx's timeout is per read.
            if time.monotonic() > deadline:
                raise _TooSlow()
        return b"".join(chunks), False


def _short(exc: Exception) -> str:
    """The exception's text as it is: it may quote a rendered secret, so it is tidied and
    cut only after redaction (integrations.tidy_error), never here."""
    return str(exc) or type(exc).__name__


__all__ = [
    "EVENT_VARIABLES", "METHODS", "SPEC_SUFFIX", "BasicAuth", "GuardedBackend", "GuardedTransport",
    "RenderedRequest", "SendOutcome", "WebhookSender", "WebhookSpec", "address_refusal", "event_variables",
    "load_spec", "parse_spec", "render", "render_request", "template_names",
]
