"""The HTTP interface of `logic serve` (FastAPI over the one Service).

app                create_app: the /v1 routes and /healthz, OpenAPI at /docs
models             request and response bodies (pydantic)
errors             every error answer and its log line, rendered once
middleware         BodyLimit, InternalErrors, CountRequests (ASGI)
publish_fast_path  PublishFastPath: POST .../events without FastAPI's overhead
auth_throttle      AuthThrottle: failed Bearer sign-ins per client address
"""
