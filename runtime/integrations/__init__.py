"""Webhook integrations: `NAME.webhook.json` from spec to a sent, logged request.

    templates  compile_template, problems, render: Mustache (pystache's parser) over JSON data
    variables  event_namespace: an event's predefined variables (ours, Particle's) and JSON data
    spec       WebhookSpec, parse_spec, load_spec: the file (our names or Particle's), checked
    request    RenderedRequest, render_request: the request for one event
    hooks      hook-sent, hook-response, hook-error: topics, responseTemplate, no chaining
    guard      GuardedTransport: connect-time SSRF check (public addresses only)
    sender     WebhookSender: bounded retries, no redirects, capped reads
    runner     IntegrationRunner: validate, fire for an event, redact the log

The rows (specs, logs) are `store.integrations.IntegrationStore`.
"""
