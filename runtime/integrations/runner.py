"""Webhook integrations: check a spec against its owner's secrets, and fire one for an event.

`fire` reads the secrets the templates use through a SecretsBroker (the
same allowlist and audit as a run), renders and sends the request, and
returns everything the caller must commit in one transaction: the redacted
log record, the accesses, and the events to publish (`hooks`: hook-sent,
then the response or the error). It writes nothing. An event a webhook
published never fires one (`hooks.is_hook_event`): it is answered with no
request and no event.

The log and the published response are redacted with the values read, plus
the forms httpx gives them on the wire (its URL percent-encoding keeps more
characters than `quote` does, so a secret in a URL needs its own pattern).
The published `hook-response/<event>` data is masked too (security promise
1 covers published event data, and an echo server would hand the secret to
every function that listens). The response is read up to the event data
limit plus the largest secret, redacted, then cut to the limit: cutting first
could leave the front half of a secret at the edge, unmasked.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from runtime.events.rules import HOOK_ERROR_PREFIX, HOOK_SENT_PREFIX, event_name_problem
from runtime.execution.redactor import Redactor
from runtime.execution.secrets_broker import SecretAccessError, SecretsBroker
from runtime.integrations.hooks import is_hook_event, response_data, topics
from runtime.integrations.request import render_request
from runtime.integrations.sender import SendOutcome, WebhookSender
from runtime.integrations.spec import WebhookSpec, parse_spec
from runtime.integrations.templates import Budget, Namespace, compile_template, escape_html
from runtime.integrations.variables import event_namespace
from store.clock import now_iso
from store.errors import DeployError, InvalidInput, TooLarge
from store.integrations import IntegrationRecord
from store.repositories import EnvRepository, SecretRepository
from store.secrets import Access, check_name
from store.settings import Settings

ERROR_TEXT_MAX = 300  # characters of a delivery's error kept in its log (one line)
HOOK_EVENT_REFUSED = "events published by a webhook (hook-sent, hook-response, hook-error) never fire webhooks"

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_WIRE_EXCLUDED = {
    # httpx (WHATWG) percent-encode sets: the characters each URL part escapes.
    "query": ' "#<>',
    "path": ' "#<>?`{}',
    "fragment": ' "<>`',
    "userinfo": ' "#<>?`{}/;=@[\\]^|',
}
_PERCENT = re.compile(r"%[A-Fa-f0-9]{2}")
_CHARSET = re.compile(r"charset=[\"']?([A-Za-z0-9_.:-]+)", re.I)


@dataclass
class FireResult:
    ok: bool
    log: dict[str, Any]  # redacted request/response/timing record
    accesses: list[Access] = field(default_factory=list)
    events: list[tuple[str, str | None]] = field(default_factory=list)  # to publish, in order (name, data)

    @property
    def response_event(self) -> tuple[str, str | None]:
        """The last event: (response topic, data) or (error topic, message); ("", None) if none."""
        return self.events[-1] if self.events else ("", None)


class IntegrationRunner:
    """Checks specs and fires integrations; the owner is already resolved (Service)."""

    def __init__(
        self,
        secrets: SecretRepository,
        settings: Settings,
        *,
        env: EnvRepository | None = None,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.secrets = secrets
        self.env = env  # the owners' environment variables, for specs with `use_env`
        self.settings = settings
        self.sender = WebhookSender(
            timeout_s=settings.webhook_timeout_s,
            retries=settings.webhook_retries,
            max_body_bytes=settings.event_data_max_bytes + settings.secret_value_max_bytes,
            transport=transport,
            backoff_s=backoff_s,
            sleep=sleep,
            allow_private=settings.webhook_allow_private,
        )

    def close(self) -> None:
        self.sender.close()

    # configuration -------------------------------------------------------------

    def validate(self, owner: str, spec_json: object) -> WebhookSpec:
        """The checked spec; DeployError for the file, InvalidInput naming missing secrets."""
        spec = parse_spec(spec_json, filename="webhook")
        problems = []
        problem = event_name_problem(spec.event, self.settings)
        if problem is not None:
            problems.append(f"webhook: event: {problem.replace('event name', 'event prefix', 1)}")
        for name in spec.secrets:
            try:
                check_name(name, max_chars=self.settings.secret_name_max_chars)
            except InvalidInput as exc:
                problems.append(f"webhook: secrets: {exc.message}")
        for where, topic in (("responseTopic", spec.response_topic), ("errorResponseTopic", spec.error_response_topic)):
            if topic is not None and not compile_template(topic).tags:
                problem = event_name_problem(topic, self.settings, from_hook=True)
                if problem is not None:
                    problems.append(f"webhook: {where}: {problem}")
        if problems:
            raise DeployError(problems)
        if spec.use_env:
            problem = self._env_problem(owner, spec)[0]
            if problem is not None:
                raise InvalidInput(problem)
        missing = [name for name in spec.secrets if not self.secrets.exists(owner, name)]
        if missing:
            raise InvalidInput(
                f"secret{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"do{'' if len(missing) > 1 else 'es'} not exist for {owner}: create "
                f"{'them' if len(missing) > 1 else 'it'} first"
            )
        return spec

    def _env_problem(self, owner: str, spec: WebhookSpec) -> tuple[str | None, dict[str, str]]:
        """(why the spec cannot use the owner's environment now, or None; the variables it uses).

        A name both a declared secret and an environment variable is refused: which value
        `{{{NAME}}}` means must never be a guess (the env value is shown, the secret is not)."""
        values = self.env.values(owner) if self.env is not None else {}
        clash = [name for name in spec.secrets if name in values]
        if clash:
            return (
                f"{', '.join(clash)}: both a declared secret and an environment variable; "
                "rename one (an integration with use_env cannot tell them apart)",
                {},
            )
        names = spec.env_names()
        missing = [name for name in names if name not in values]
        if missing:
            return (
                f"environment variable{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"do{'' if len(missing) > 1 else 'es'} not exist for {owner}: set it with `logic env set`",
                {},
            )
        return None, {name: values[name] for name in names}

    # firing --------------------------------------------------------------------

    def fire(self, record: IntegrationRecord, event: dict[str, Any], *, run_id: str | None = None) -> FireResult:
        """Send the webhook for `event` ({id, name, data, published_at, source}); no DB writes."""
        at = now_iso()
        if is_hook_event(event):
            return FireResult(ok=False, log=self._log(at, event, [], error=HOOK_EVENT_REFUSED))
        try:
            spec = WebhookSpec.model_validate(record.spec())
        except ValidationError:
            return self._failed(at, event, [], "the integration's configuration is no longer valid: update it")
        broker = SecretsBroker(
            self.secrets,
            owner=record.owner,
            declared=tuple(spec.secrets),
            consumer_kind="integration",
            consumer_id=record.id,
            consumer_name=record.name,
            run_id=run_id,
            bytes_max=self.settings.secret_bytes_per_run_max,
            masking_max=self.settings.masking_bytes_per_run_max,
        )
        env: dict[str, str] = {}
        if spec.use_env:  # env can change after the integration was checked: again now
            problem, env = self._env_problem(record.owner, spec)
            if problem is not None:
                return self._failed(at, event, [], problem)
        secrets: dict[str, str] = {}
        try:
            for secret in spec.used_secrets():
                secrets[secret] = broker.read(secret)
        except SecretAccessError as exc:
            return self._failed(at, event, broker.accesses, str(exc), _redactor(broker.plain_values()))
        redactor = _redactor(broker.plain_values())
        namespace = event_namespace(event, secrets, env)
        del secrets
        try:
            rendered = render_request(spec, namespace, self._budget())
            names = topics(spec, namespace, self._budget())
        except TooLarge as exc:
            return self._failed(at, event, broker.accesses, exc.message, redactor)
        outcome = self.sender.send(rendered)
        return self._result(at, event, outcome, broker.accesses, redactor, spec, namespace, names)

    def _budget(self) -> Budget:
        return Budget(self.settings.webhook_render_max_chars)

    def _failed(
        self,
        at: str,
        event: dict[str, Any],
        accesses: list[Access],
        error: str,
        redactor: Redactor | None = None,
    ) -> FireResult:
        """Nothing was sent: the error, on the default error topic (no template is trusted here)."""
        log = (redactor or Redactor.for_values(())).redact_json(self._log(at, event, accesses, error=error))
        log["error"] = tidy_error(log["error"])
        name = HOOK_ERROR_PREFIX + (event.get("name") or "")
        return FireResult(ok=False, log=log, accesses=list(accesses), events=[(name, log["error"])])

    def _log(self, at: str, event: dict[str, Any], accesses: list[Access], *, error: str | None) -> dict[str, Any]:
        return {
            "at": at,
            "event": {"id": event.get("id"), "name": event.get("name") or ""},
            "ok": False,
            "request": None,
            "response": None,
            "attempts": 0,
            "duration_ms": 0.0,
            "error": error,
            "secrets_accessed": list(dict.fromkeys(a.secret_name for a in accesses)),
        }

    def _result(
        self,
        at: str,
        event: dict[str, Any],
        outcome: SendOutcome,
        accesses: list[Access],
        redactor: Redactor,
        spec: WebhookSpec,
        namespace: Namespace,
        names: tuple[str, str],
    ) -> FireResult:
        cap = self.settings.event_data_max_bytes
        log = self._log(at, event, accesses, error=outcome.error)
        log["ok"] = outcome.ok
        log["attempts"] = outcome.attempts
        log["duration_ms"] = outcome.duration_ms
        body_text = ""
        if outcome.request is not None:
            request = outcome.request
            log["request"] = {
                "method": request.method,
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": request.content.decode("utf-8", "replace") if request.content else None,
            }
        if outcome.status is not None:
            body_text = _decode(outcome.body, outcome.headers)
            log["response"] = {
                "status": outcome.status,
                "headers": outcome.headers,
                "body": body_text,
                "truncated": outcome.truncated,
            }
            if not outcome.ok:
                log["error"] = _status_error(outcome.status)
        log = redactor.redact_json(log)
        # Cut only after redaction: a cut through a secret would leave part of it unmasked.
        if isinstance(log["error"], str):
            log["error"] = tidy_error(log["error"])
        for part in ("request", "response"):
            if log[part] and isinstance(log[part].get("body"), str):
                log[part]["body"], cut = _cap(log[part]["body"], cap)
                if part == "response":
                    log[part]["truncated"] = log[part]["truncated"] or cut
        response_name, error_name = names
        events: list[tuple[str, str | None]] = []
        if outcome.sent:
            events.append((HOOK_SENT_PREFIX + (event.get("name") or ""), None))
        if log["ok"]:
            try:
                data, _ = _cap(response_data(spec, body_text, namespace, redactor, self._budget()), cap)
                events.append((response_name, data))
            except TooLarge as exc:
                log["ok"] = False
                log["error"] = f"responseTemplate: {exc.message}"
        if not log["ok"]:
            events.append((error_name, log["error"] or "webhook failed"))
        return FireResult(ok=log["ok"], log=log, accesses=list(accesses), events=events)


def tidy_error(text: str, limit: int = ERROR_TEXT_MAX) -> str:
    """One line, at most `limit` characters: for an already redacted error text."""
    return " ".join(text.split())[:limit]


def _redactor(values: list[str]) -> Redactor:
    """The values as a template may write them ({{NAME}} HTML-escapes), and as httpx quotes them in a URL."""
    forms = set(values) | {escape_html(v) for v in values}
    for value in list(forms):
        for excluded in _WIRE_EXCLUDED.values():
            forms.add(_wire_quote(value, excluded))
    return Redactor.for_values(forms)


def _wire_quote(value: str, excluded: str) -> str:
    """httpx's URL quoting: existing %XX kept, other characters outside the safe set escaped."""

    def part(text: str) -> str:
        return "".join(
            c
            if c in _UNRESERVED or (" " < c < "\x7f" and c not in excluded)
            else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
            for c in text
        )

    out, pos = [], 0
    for match in _PERCENT.finditer(value):
        out.append(part(value[pos : match.start()]))
        out.append(match.group())
        pos = match.end()
    out.append(part(value[pos:]))
    return "".join(out)


def _decode(body: bytes, headers: dict[str, str]) -> str:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    match = _CHARSET.search(content_type)
    encoding = "utf-8"
    if match:
        try:
            encoding = codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return body.decode(encoding, "replace")


def _cap(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` UTF-8 bytes, on a character boundary."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text, False
    return data[:max_bytes].decode("utf-8", "ignore"), True


def _status_error(status: int) -> str:
    try:
        reason = httpx.codes(status).phrase  # type: ignore[attr-defined]  # set in codes.__new__, undeclared
    except ValueError:
        reason = ""
    text = f"HTTP {status} {reason}".strip()
    if 300 <= status < 400:
        text += " (redirects are not followed)"
    return text


__all__ = ["FireResult", "IntegrationRunner"]
