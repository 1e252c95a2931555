"""Sending a rendered webhook request.

One request per attempt, no redirects followed (a 3xx is an error: following
one would resend the body, and any secret in it, to a host the spec does not
name), a deadline per attempt (httpx's timeout is per read, so a server
trickling bytes is cut off too), at most `retries` more attempts after a
connection error or a 5xx, with exponential backoff; a timeout after the
request went out is not retried (the server may have acted on it). The
response body is read up to a cap. Environment proxies and ~/.netrc are ignored (trust_env=False):
netrc would add the server user's own credentials to a user-chosen host. A request with
`verify` false (Particle's rejectUnauthorized, refused for integrations that declare
secrets) goes through a second client whose TLS checks no certificate; the destination
guard is the same.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from runtime.integrations.guard import DestinationRefused, GuardedTransport, exception_text
from runtime.integrations.request import RenderedRequest
from store.errors import InvalidInput


@dataclass
class SendOutcome:
    request: httpx.Request | None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    error: str | None = None
    retryable: bool = False  # a connection error: nothing (complete) reached the server
    sent: bool = False  # the request went out (an answer came, or the wait for one timed out)
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

    def __init__(
        self,
        *,
        timeout_s: float,
        retries: int,
        max_body_bytes: int,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        allow_private: bool = False,
    ):
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.max_body_bytes = max_body_bytes
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.allow_private = allow_private
        self._transport = transport
        self._clients: dict[bool, httpx.Client] = {}  # by `verify`
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        return self._client(verify=True)

    def _client(self, *, verify: bool) -> httpx.Client:
        """Made on first use: loading CA certificates costs every CLI command ~35 ms otherwise."""
        with self._lock:
            if verify not in self._clients:
                transport = self._transport or GuardedTransport(
                    allow_private=self.allow_private, ssl_context=None if verify else _unverified()
                )
                self._clients[verify] = httpx.Client(
                    transport=transport,
                    timeout=httpx.Timeout(self.timeout_s),
                    follow_redirects=False,
                    trust_env=False,
                    headers={"User-Agent": "logic-runtime-webhook"},
                )
            return self._clients[verify]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def send(self, rendered: RenderedRequest) -> SendOutcome:
        started = time.monotonic()
        client = self._client(verify=rendered.verify)
        try:
            request = rendered.build(client)
        except InvalidInput as exc:
            return SendOutcome(None, error=exc.message)
        outcome = SendOutcome(request)
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            outcome = self._attempt(client, request)
            outcome.attempts = attempt + 1
            if not (outcome.retryable or (outcome.status is not None and outcome.status >= 500)):
                break
        outcome.duration_ms = round((time.monotonic() - started) * 1000, 3)
        return outcome

    def _attempt(self, client: httpx.Client, request: httpx.Request) -> SendOutcome:
        deadline = time.monotonic() + self.timeout_s
        try:
            response = client.send(request, stream=True)
            try:
                body, truncated = self._read(response, deadline)
            finally:
                response.close()
            return SendOutcome(request, response.status_code, dict(response.headers), body, truncated, sent=True)
        except DestinationRefused as exc:
            return SendOutcome(request, error=str(exc))
        except httpx.ConnectTimeout:
            return SendOutcome(request, error=f"connection timed out after {self.timeout_s:g} s", retryable=True)
        except (httpx.ReadTimeout, _TooSlow):
            return SendOutcome(request, error=f"timed out after {self.timeout_s:g} s", sent=True)
        except httpx.TimeoutException:
            return SendOutcome(request, error=f"timed out after {self.timeout_s:g} s")
        except httpx.ConnectError as exc:
            return SendOutcome(request, error=f"connection failed: {exception_text(exc)}", retryable=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return SendOutcome(request, error=f"connection broken: {exception_text(exc)}", retryable=True)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:
            return SendOutcome(request, error=f"request failed: {type(exc).__name__}: {exception_text(exc)}")

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


def _unverified() -> ssl.SSLContext:
    """TLS that checks no certificate: only for a request whose spec asked (see the module doc)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
