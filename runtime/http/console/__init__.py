"""The web console: server-rendered pages over the one Service, at `/` on `logic serve`.

routes    the pages (Jinja2 templates in templates/), forms that work without JavaScript
security  session cookie, origin + CSRF checks, the security headers (CSP, framing, nosniff)
static/   console.css, console.js, docs.js, and vendor/ (htmx 2.0.11, Swagger UI 5.35.0:
          served from the package, no CDN, so the console and /docs work offline)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).parent

# Swagger UI sets style attributes from its script: /docs alone allows inline styles (never scripts).
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def mount_console(app: FastAPI) -> None:
    from runtime.http.console.routes import router, templates

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    async def docs(request: Request) -> Response:
        return templates.TemplateResponse(request, "docs.html", {}, headers={"Content-Security-Policy": DOCS_CSP})

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    app.include_router(router)
