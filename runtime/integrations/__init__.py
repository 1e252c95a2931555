"""Webhook integrations: `NAME.webhook.json` from spec to a sent, logged request.

    templates  Mustache variables only: template_names, render, event_variables
    spec       WebhookSpec, parse_spec, load_spec: the file, checked
    request    RenderedRequest, render_request: the request for one event
    guard      GuardedTransport: connect-time SSRF check (public addresses only)
    sender     WebhookSender: bounded retries, no redirects, capped reads
    runner     IntegrationRunner: validate, fire for an event, redact the log

The rows (specs, logs) are `store.integrations.IntegrationStore`.
"""
