"""The events a webhook publishes, and the rule that none of them fires a webhook.

Once the request went out: `hook-sent/<event name>`, without data. Then, for
a 2xx answer, the response on `responseTopic` (by default
`hook-response/<event name>`): the body as it came, or `responseTemplate`
rendered with the body's JSON as its data (and the event's predefined
variables); for anything else, the error on `errorResponseTopic` (by default
`hook-error/<event name>`). Topics are templates over the event's names.
Neither may use secrets (`spec` refuses them): what they render is published.
Published data is masked with the secrets the request used, before a
template reads the body and again after (a template could join a secret's
pieces back together).

A hook event never fires a webhook (Particle: webhooks "cannot be chained"),
so a webhook answering its own event cannot loop: that is known by its name
(the hook prefixes) or, for a custom topic, by its source.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.events.rules import HOOK_ERROR_PREFIX, HOOK_RESPONSE_PREFIX, HOOK_SOURCE_PREFIX, fires_webhooks
from runtime.execution.redactor import Redactor
from runtime.integrations.spec import WebhookSpec
from runtime.integrations.templates import Budget, Namespace, render, render_json
from runtime.integrations.variables import json_data


def source_of(integration_name: str) -> str:
    return HOOK_SOURCE_PREFIX + integration_name


def is_hook_event(event: dict[str, Any]) -> bool:
    """Whether `event` was published by a webhook (so it must not fire one)."""
    return not fires_webhooks(str(event.get("name") or ""), str(event.get("source") or ""))


def topics(spec: WebhookSpec, namespace: Namespace, budget: Budget) -> tuple[str, str]:
    """(the response's event name, the error's event name) for the event `namespace` describes."""
    name = namespace.variables.get("EVENT_NAME", "")
    published = Namespace(data=namespace.data, variables=namespace.variables, env=namespace.env)  # no secrets, ever
    response = HOOK_RESPONSE_PREFIX + name
    error = HOOK_ERROR_PREFIX + name
    if spec.response_topic is not None:
        response = render(spec.response_topic, published, budget)
    if spec.error_response_topic is not None:
        error = render(spec.error_response_topic, published, budget)
    return response, error


def response_data(spec: WebhookSpec, body: str, namespace: Namespace, redactor: Redactor, budget: Budget) -> str:
    """What the response event carries: the body, or `responseTemplate` over it; masked."""
    if spec.response_template is None:
        return redactor.redact(body)
    # Threat: a server echoing the secret; the template sees only the masked body.
    data = redactor.redact_json(json_data(body))
    scope = Namespace(data=data, variables=namespace.variables, reserved_from_data=True)
    if isinstance(spec.response_template, str):
        text = render(spec.response_template, scope, budget)
    else:
        rendered = render_json(spec.response_template, scope, budget)
        text = json.dumps(rendered, separators=(",", ":"), ensure_ascii=False)
    return redactor.redact(text)
