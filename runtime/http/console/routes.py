"""The console's pages: server-rendered over the one Service, forms that work without JavaScript.

Every page needs a session (else a redirect to /sign-in); every POST checks the
origin and the session's CSRF token first (security.py). The owner is the
caller's sandbox, or `?org=NAME` for an organization they belong to: the same
`Service` methods as the API, so a non-member sees no org and another owner's
names are 404. Secret values go one way only: from a password field into
`Service.create_secret`/`update_secret`. No template ever receives one, so no
page, fragment or error can show it, not even after a validation error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from runtime.events.streams import RUNS
from runtime.http.auth_throttle import client_address
from runtime.http.console.security import COOKIE, PAGE_HEADERS, check_csrf, check_origin, cookie_options
from runtime.http.errors import hold_refusal
from runtime.http.live import frame, open_stream
from runtime.manifest import files_from_json
from runtime.service import Service, no_runs
from store.errors import (
    Conflict,
    DeployError,
    InvalidInput,
    LogicError,
    NotFound,
    PermissionDenied,
    TooLarge,
    TooManyRequests,
    Unauthorized,
)
from store.secrets import ImportRefused
from store.sessions import Session

HERE = Path(__file__).parent
# Autoescape on for every template (threat: a function name, log line or event data with markup).
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))

router = APIRouter(include_in_schema=False)


def _local_time(value: str | None) -> str:
    """An ISO UTC time as `YYYY-MM-DD HH:MM UTC` (the <time> element carries the exact value;
    console.js shows it in the browser's zone, with UTC on hover)."""
    if not value:
        return "never"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = _local_time
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _session(request: Request) -> Session:
    return _service(request).session(request.cookies.get(COOKIE))


def _org(request: Request) -> str | None:
    org = request.query_params.get("org") or None
    return org


def _page(request: Request, template: str, session: Session, status: int = 200, **context: Any) -> HTMLResponse:
    service = _service(request)
    org = _org(request)
    context.update(
        request=request,
        user=session.user,
        csrf=session.csrf,
        org=org,
        orgs=service.list_orgs(session.user),
        owner_query=("?" + urlencode({"org": org})) if org else "",
        settings=service.settings,
    )
    return templates.TemplateResponse(request, template, context, status_code=status, headers=PAGE_HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def _with_org(path: str, org: str | None) -> str:
    return path + ("?" + urlencode({"org": org}) if org else "")


async def _form(request: Request, session: Session) -> dict[str, str]:
    """The POSTed form, after the origin and CSRF checks (403 before anything is read further)."""
    check_origin(request)
    form = await request.form()
    check_csrf(session.csrf, form.get("csrf"))
    return {k: v for k, v in form.items() if isinstance(v, str)}


def page(path: str, methods: tuple[str, ...] = ("GET",)) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A console route: signed-out visitors go to the sign-in page; a LogicError renders as
    an error page with its status (404 for another owner's names, 403 for a bad form)."""

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                session = _session(request)
            except Unauthorized:
                target = "/sign-in" + ("?" + urlencode({"next": request.url.path}) if request.url.path != "/" else "")
                return _redirect(target)
            try:
                result: Response = await handler(request, session)
                return result
            except LogicError as exc:
                return _page(request, "error.html", session, status=exc.status, message=exc.message)

        endpoint.__name__ = handler.__name__
        router.add_api_route(path, endpoint, methods=list(methods), response_class=HTMLResponse)
        return handler

    return decorate


# sign in and out ------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "sign_in.html", {"error": None}, headers=PAGE_HEADERS)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    try:
        check_origin(request)
    except PermissionDenied as exc:
        return templates.TemplateResponse(
            request, "sign_in.html", {"error": exc.message}, status_code=403, headers=PAGE_HEADERS
        )
    form = await request.form()
    token = form.get("token")
    throttle = request.app.state.auth_throttle
    address = client_address(request.scope)
    try:
        throttle.check(address)
        session_id, _ = _service(request).sign_in(token if isinstance(token, str) else "")
    except LogicError as exc:
        if isinstance(exc, Unauthorized):
            throttle.failed(address)
        await hold_refusal(exc, _service(request).settings.refusal_hold_ms)  # a 429, as the API's
        # The token is never echoed back into the form.
        return templates.TemplateResponse(
            request, "sign_in.html", {"error": exc.message}, status_code=exc.status, headers=PAGE_HEADERS
        )
    next_path = request.query_params.get("next") or "/"
    if not next_path.startswith("/") or next_path.startswith("//"):
        next_path = "/"  # never an open redirect
    response = _redirect(next_path)
    response.set_cookie(COOKIE, session_id, **cookie_options(request))  # type: ignore[arg-type]
    return response


@page("/sign-out", methods=("POST",))
async def sign_out(request: Request, session: Session) -> Response:
    await _form(request, session)
    _service(request).sign_out(request.cookies.get(COOKIE) or "")
    response = _redirect("/sign-in")
    response.delete_cookie(COOKIE, path="/")
    return response


@page("/")
async def home(request: Request, session: Session) -> Response:
    return _redirect(_with_org("/secrets", _org(request)))


# secrets --------------------------------------------------------------------------


@page("/secrets")
async def secrets_list(request: Request, session: Session) -> Response:
    rows = _service(request).list_secrets(session.user, _org(request))
    return _page(request, "secrets.html", session, secrets=rows)


@page("/secrets/new", methods=("GET", "POST"))
async def secret_new(request: Request, session: Session) -> Response:
    error, name = None, ""
    if request.method == "POST":
        form = await _form(request, session)
        name = form.get("name", "")
        try:
            _service(request).create_secret(session.user, name, form.get("value", ""), _org(request))
        except (InvalidInput, Conflict) as exc:
            error = exc.message  # the value is not put back into the form
        else:
            return _redirect(_with_org("/secrets", _org(request)))
    return _page(request, "secret_new.html", session, status=422 if error else 200, error=error, name=name)


# secret import and restore (issue 13) -------------------------------------------------
# Before /secrets/{name}, which would take "import" for a name. The imported text goes one
# way only, like a value: into Service.import_secrets. No template receives it, so a
# refused import shows its problems (lines and names) over an empty form.


@page("/secrets/import", methods=("GET", "POST"))
async def secrets_import(request: Request, session: Session) -> Response:
    """GET: the import form (a file or pasted text). POST: import all or nothing; the page
    then names what was created and updated, or every problem by line."""
    service, org = _service(request), _org(request)
    if request.method == "GET":
        return _page(request, "secrets_import.html", session, problems=[], result=None, update=False)
    check_origin(request)
    max_bytes = service.settings.secret_import_max_bytes
    form = await request.form()
    try:
        check_csrf(session.csrf, form.get("csrf"))
        update = form.get("update") == "1"
        upload = form.get("file")
        content: bytes | str = ""
        if isinstance(upload, UploadFile) and upload.filename:
            content = await upload.read(max_bytes + 1)  # one byte past the limit says "too big"
        if not content:
            text = form.get("content")
            content = text if isinstance(text, str) else ""
        problems: list[str] = []
        result = None
        try:
            result = service.import_secrets(session.user, content, update=update, org=org)
        except ImportRefused as exc:
            problems = exc.issues
        except (InvalidInput, TooLarge) as exc:
            problems = [exc.message]
    finally:
        await form.close()
    status = 422 if problems else 200
    return _page(
        request, "secrets_import.html", session, status=status, problems=problems, result=result, update=update
    )


@page("/secrets/{name}")
async def secret_detail(request: Request, session: Session) -> Response:
    service, org = _service(request), _org(request)
    name = request.path_params["name"]
    info = service.get_secret(session.user, name, org)
    accesses = service.audit(session.user, name, org, limit=20)
    versions = service.secret_versions(session.user, name, org)
    return _page(request, "secret_detail.html", session, secret=info, accesses=accesses, versions=versions)


@page("/secrets/{name}/edit", methods=("GET", "POST"))
async def secret_edit(request: Request, session: Session) -> Response:
    service, org = _service(request), _org(request)
    name = request.path_params["name"]
    info = service.get_secret(session.user, name, org)
    error = None
    if request.method == "POST":
        form = await _form(request, session)
        try:
            service.update_secret(session.user, name, form.get("value", ""), org)
        except InvalidInput as exc:
            error = exc.message
        else:
            return _redirect(_with_org("/secrets", org))
    return _page(request, "secret_edit.html", session, status=422 if error else 200, secret=info, error=error)


@page("/secrets/{name}/delete", methods=("GET", "POST"))
async def secret_delete(request: Request, session: Session) -> Response:
    """GET asks "are you sure?" (a page, so it works without JavaScript); POST deletes."""
    service, org = _service(request), _org(request)
    name = request.path_params["name"]
    if request.method == "GET":
        return _page(request, "secret_delete.html", session, secret=service.get_secret(session.user, name, org))
    await _form(request, session)
    service.delete_secret(session.user, name, org)  # Conflict while in use
    return _redirect(_with_org("/secrets", org))


@page("/secrets/{name}/versions/{version}/restore", methods=("GET", "POST"))
async def secret_restore(request: Request, session: Session) -> Response:
    """GET asks "restore version N?" (a page, so it works without JavaScript); POST restores."""
    service, org = _service(request), _org(request)
    name = request.path_params["name"]
    try:
        version = int(request.path_params["version"])
    except ValueError:
        raise NotFound(f"secret {name} has no such version") from None
    if request.method == "GET":
        info = service.get_secret(session.user, name, org)
        versions = service.secret_versions(session.user, name, org)
        chosen = next((v for v in versions if v.number == version), None)
        if chosen is None:
            raise NotFound(f"secret {name} has no kept version {version}")
        return _page(request, "secret_restore.html", session, secret=info, version=chosen)
    await _form(request, session)
    service.restore_secret(session.user, name, version, org)  # NotFound, Conflict for the current one
    return _redirect(_with_org(f"/secrets/{name}", org))


# logic functions --------------------------------------------------------------------

STARTER_SOURCE = 'import logic\n\n\ndef main(event):\n    logic.log.info("got", event.name)\n    return {"ok": True}\n'


@page("/logic")
async def logic_list(request: Request, session: Session) -> Response:
    service, org = _service(request), _org(request)
    rows = []
    today = service.runs_today(session.user, org)  # the CLI's `functions list` counts, the same answer
    for fn in service.list_functions(session.user, org):
        last = service.function_runs(session.user, fn.id, org, limit=1)
        rows.append({"fn": fn, "last": last[0] if last else None, "today": today.get(fn.id) or no_runs()})
    return _page(request, "logic.html", session, functions=rows)


@page("/logic/define", methods=("GET", "POST"))
async def logic_define(request: Request, session: Session) -> Response:
    """Define -> Execute -> Deploy: code and manifest, a test event, Run (nothing stored but
    the access audit) or Deploy (a new version)."""
    service, org = _service(request), _org(request)
    values = {
        "source": STARTER_SOURCE,
        "manifest": '{\n  "name": "my-function",\n  "secrets": []\n}',
        "event_name": "test-event",
        "event_data": "",
    }
    record, problems, deployed = None, [], None
    if request.method == "POST":
        form = await _form(request, session)
        values.update({k: form.get(k, "") for k in values})
        try:
            manifest = json.loads(values["manifest"] or "{}")
        except ValueError as exc:
            problems = [f"manifest: invalid JSON: {exc}"]
        else:
            try:
                body = {**manifest, "source": values["source"]} if isinstance(manifest, dict) else manifest
                files = files_from_json(body)
                if form.get("action") == "deploy":
                    deployed = service.deploy_function(session.user, files, org)
                else:
                    record = service.execute_function(
                        session.user,
                        files,
                        event_name=values["event_name"] or None,
                        data=values["event_data"] or None,
                        org=org,
                    )
            except DeployError as exc:
                problems = exc.problems
            except InvalidInput as exc:
                problems = [exc.message]
    if deployed is not None:
        return _redirect(_with_org(f"/logic/{deployed.name}", org))
    return _page(request, "define.html", session, values=values, record=record, problems=problems)


@page("/logic/{ref}")
async def function_page(request: Request, session: Session) -> Response:
    service, org = _service(request), _org(request)
    fn = service.get_function(session.user, request.path_params["ref"], org)
    runs = service.function_runs(session.user, fn.id, org, limit=20)
    return _page(
        request,
        "function.html",
        session,
        fn=fn,
        runs=runs,
        manifest=fn.to_json(),
        triggers=service.function_triggers(session.user, fn.id, org),
        versions=service.function_versions(session.user, fn.id, org),
    )


@page("/logic/{ref}/runs")
async def function_runs(request: Request, session: Session) -> Response:
    """The run log table alone: the function page fetches it again (htmx) for each new run."""
    service, org = _service(request), _org(request)
    fn = service.get_function(session.user, request.path_params["ref"], org)
    runs = service.function_runs(session.user, fn.id, org, limit=20)
    return _page(request, "_runs.html", session, fn=fn, runs=runs)


@page("/logic/{ref}/runs/stream")
async def function_runs_stream(request: Request, session: Session) -> Response:
    """A ping per new run (`event: run`, its id and status only): console.js then has htmx
    fetch the run table again, so what the page shows is always the rendered fragment."""
    service, org = _service(request), _org(request)
    fn = service.get_function(session.user, request.path_params["ref"], org)
    ping = lambda item: frame("run", {"id": item.body["id"], "status": item.body["status"]})  # noqa: E731
    response: Response = open_stream(service, fn.owner, RUNS, fn.id.__eq__, ping)
    return response


@page("/logic/{ref}/runs/{run_id}/replay", methods=("POST",))
async def function_run_replay(request: Request, session: Session) -> Response:
    """The Replay button of a run: the current version runs again with that run's input;
    back to the function page, where the new run (marked as a replay) leads the log."""
    await _form(request, session)  # the origin and CSRF checks: what to replay is in the path
    service, org = _service(request), _org(request)
    ref, run_id = request.path_params["ref"], request.path_params["run_id"]
    fn = service.get_function(session.user, ref, org)
    record = await run_in_threadpool(service.replay_run, session.user, run_id, fn.id, org)  # a run takes a while
    return _redirect(_with_org(f"/logic/{fn.name}", org) + f"#run-{record['id']}")


@page("/logic/{ref}/enabled", methods=("POST",))
async def function_enabled(request: Request, session: Session) -> Response:
    form = await _form(request, session)
    service, org = _service(request), _org(request)
    fn = service.set_function_enabled(session.user, request.path_params["ref"], form.get("enabled") == "1", org)
    return _redirect(_with_org(f"/logic/{fn.name}", org))


# integrations, audit, tokens -------------------------------------------------------


@page("/integrations")
async def integrations_list(request: Request, session: Session) -> Response:
    rows = _service(request).list_integrations(session.user, _org(request))
    return _page(request, "integrations.html", session, integrations=rows)


@page("/audit")
async def audit_page(request: Request, session: Session) -> Response:
    """Two views (links, so no JavaScript is needed): the accesses, and `?view=changes`."""
    service, org = _service(request), _org(request)
    secret = request.query_params.get("secret") or None
    function = request.query_params.get("function") or None
    view = "changes" if request.query_params.get("view") == "changes" else "accesses"
    accesses, changes = [], []
    if view == "changes":
        changes = service.list_changes(session.user, org, secret=secret, function=function, limit=200)
    else:
        accesses = service.audit(session.user, secret, org, limit=200)
    owner = {"org": org} if org else {}
    tab_urls = {
        "accesses": "/audit" + ("?" + urlencode(owner) if owner else ""),
        "changes": "/audit?" + urlencode({**owner, "view": "changes"}),
    }
    return _page(
        request,
        "audit.html",
        session,
        view=view,
        accesses=accesses,
        changes=changes,
        secret=secret,
        function=function,
        tab_urls=tab_urls,
    )


def _token_form_once(session: Session, tokens: list[dict[str, Any]]) -> str:
    """The create form's one-time field: bound to the session and to the newest token it has
    seen, so a reload that re-posts the form (after it created a token) no longer matches and
    creates nothing. Stateless: nothing to store, nothing to expire."""
    newest = max((int(t["id"]) for t in tokens), default=0)
    return hmac.new(session.csrf.encode(), f"create-token:{newest}".encode(), hashlib.sha256).hexdigest()


@page("/tokens", methods=("GET", "POST"))
async def tokens_page(request: Request, session: Session) -> Response:
    service = _service(request)
    created = error = None
    if request.method == "POST":
        form = await _form(request, session)
        if hmac.compare_digest(form.get("once", ""), _token_form_once(session, service.list_tokens(session.user))):
            created = service.create_token(session.user, label=form.get("label") or None)
        else:
            error = "This form was already used (a reload posts it again), so no token was created. Create one below."
    rows = service.list_tokens(session.user)
    return _page(
        request,
        "tokens.html",
        session,
        status=409 if error else 200,
        tokens=rows,
        created=created,
        error=error,
        once=_token_form_once(session, rows),
        current=session.token_id,
    )


@page("/tokens/{token_id}/revoke", methods=("GET", "POST"))
async def token_revoke(request: Request, session: Session) -> Response:
    """GET asks "are you sure?"; POST revokes (and ends this session if it is its token)."""
    service = _service(request)
    try:
        token_id = int(request.path_params["token_id"])
    except ValueError:
        raise NotFound("no such token") from None
    if request.method == "GET":
        token = next((t for t in service.list_tokens(session.user) if t["id"] == token_id), None)
        if token is None:
            raise NotFound("no such token")
        return _page(request, "token_revoke.html", session, token=token, current=session.token_id)
    await _form(request, session)
    service.revoke_token(session.user, token_id)
    return _redirect("/tokens" if token_id != session.token_id else "/sign-in")


# the integration builder -------------------------------------------------------------------

STARTER_SPEC = {
    "name": "my-webhook",
    "event": "my-event",
    "url": "https://example.com/hook",
    "method": "POST",
    "headers": {},
    "secrets": [],
}


def _declare(spec_text: str, name: str) -> str:
    """The spec with `name` added to its "secrets" (unchanged if it is not a JSON object)."""
    try:
        spec = json.loads(spec_text)
    except ValueError:
        return spec_text
    if not isinstance(spec, dict):
        return spec_text
    listed = spec.get("secrets")
    declared: list[Any] = listed if isinstance(listed, list) else []
    if name not in declared:
        spec["secrets"] = [*declared, name]
    return json.dumps(spec, indent=2, ensure_ascii=False)


async def _builder(request: Request, session: Session, current: Any = None) -> Response:
    """Create or edit a webhook from its JSON, with a secret picker and "create a new secret".

    Actions: save (create or update), declare (add the picked secret to "secrets": console.js
    also inserts `{{{NAME}}}` at the cursor), new_secret (create a secret on the spot; its
    value goes to the store and nowhere else)."""
    service, org = _service(request), _org(request)
    text = json.dumps(current.spec() if current is not None else STARTER_SPEC, indent=2, ensure_ascii=False)
    problems: list[str] = []
    notice = None
    if request.method == "POST":
        form = await _form(request, session)
        text = form.get("spec", "")
        action = form.get("action", "save")
        if action == "declare" and form.get("pick"):
            text = _declare(text, form["pick"])
            notice = f"{form['pick']} is declared: write {{{{{{{form['pick']}}}}}}} where it should be sent."
        elif action == "new_secret":
            name = form.get("new_name", "")
            try:
                service.create_secret(session.user, name, form.get("new_value", ""), org)
            except (InvalidInput, Conflict) as exc:
                problems = [exc.message]
            else:
                text = _declare(text, name)
                notice = f"Created {name} and declared it: write {{{{{{{name}}}}}}} where it should be sent."
        else:
            try:
                spec = json.loads(text)
            except ValueError as exc:
                problems = [f"webhook JSON is not valid: {exc}"]
            else:
                try:
                    if current is None:
                        record = service.create_integration(session.user, spec, org)
                    else:
                        record = service.update_integration(session.user, current.id, spec, org)
                except DeployError as exc:
                    problems = exc.problems
                except (InvalidInput, Conflict) as exc:
                    problems = [exc.message]
                else:
                    return _redirect(_with_org(f"/integrations/{record.name}", org))
    secrets = [s.name for s in service.list_secrets(session.user, org)]
    return _page(
        request,
        "integration_form.html",
        session,
        status=422 if problems else 200,
        spec=text,
        problems=problems,
        notice=notice,
        secrets=secrets,
        current=current,
    )


@page("/integrations/new", methods=("GET", "POST"))
async def integration_new(request: Request, session: Session) -> Response:
    return await _builder(request, session)


@page("/integrations/{ref}/edit", methods=("GET", "POST"))
async def integration_edit(request: Request, session: Session) -> Response:
    current = _service(request).get_integration(session.user, request.path_params["ref"], _org(request))
    return await _builder(request, session, current)


@page("/integrations/{ref}")
async def integration_page(request: Request, session: Session) -> Response:
    service, org = _service(request), _org(request)
    record = service.get_integration(session.user, request.path_params["ref"], org)
    logs = service.integration_logs(session.user, record.id, org, limit=20)
    return _page(request, "integration.html", session, integration=record, logs=logs)


# environment and ledgers ------------------------------------------------------------


@page("/environment", methods=("GET", "POST"))
async def environment_page(request: Request, session: Session) -> Response:
    """Variables as a table (their values are shown: they are not secrets), set and delete."""
    service, org = _service(request), _org(request)
    error, name, value = None, "", ""
    if request.method == "POST":
        form = await _form(request, session)
        name, value = form.get("name", ""), form.get("value", "")
        try:
            service.set_env(session.user, name, value, org)
        except (InvalidInput, TooLarge) as exc:
            error = exc.message
        else:
            return _redirect(_with_org("/environment", org))
    variables = service.list_env(session.user, org)
    status = 422 if error else 200
    return _page(
        request, "environment.html", session, status=status, variables=variables, error=error, name=name, value=value
    )


@page("/environment/{name}/delete", methods=("POST",))
async def environment_delete(request: Request, session: Session) -> Response:
    await _form(request, session)
    service, org = _service(request), _org(request)
    service.delete_env(session.user, request.path_params["name"], org)
    return _redirect(_with_org("/environment", org))


@page("/ledgers", methods=("GET", "POST"))
async def ledgers_page(request: Request, session: Session) -> Response:
    service, org = _service(request), _org(request)
    error, name, description = None, "", ""
    if request.method == "POST":
        form = await _form(request, session)
        name, description = form.get("name", ""), form.get("description", "")
        try:
            created = service.create_ledger(session.user, name, description, org)
        except (InvalidInput, Conflict) as exc:
            error = exc.message
        else:
            return _redirect(_with_org(f"/ledgers/{created.name}", org))
    ledgers = service.list_ledgers(session.user, org)
    status = 422 if error else 200
    return _page(
        request,
        "ledgers.html",
        session,
        status=status,
        ledgers=ledgers,
        error=error,
        name=name,
        description=description,
    )


@page("/ledgers/{name}", methods=("GET", "POST"))
async def ledger_page(request: Request, session: Session) -> Response:
    """A ledger's data as a table, its versions, and an "Advanced" raw JSON edit (replace)."""
    service, org = _service(request), _org(request)
    name = request.path_params["name"]
    ledger = service.get_ledger(session.user, name, org)  # 404 for another owner's
    error, text = None, json.dumps(ledger.data, indent=2, ensure_ascii=False, sort_keys=True)
    if request.method == "POST":
        form = await _form(request, session)
        text = form.get("data", "")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            error = f"data: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); nothing was saved"
        else:
            if not isinstance(data, dict):
                error = "data: a ledger holds one JSON object ({...}); nothing was saved"
            else:
                try:
                    service.write_ledger(session.user, name, "replace", data, org)
                except (InvalidInput, TooLarge, TooManyRequests) as exc:
                    error = f"{exc.message}; nothing was saved"
                else:
                    return _redirect(_with_org(f"/ledgers/{name}", org))
    versions = service.ledger_versions(session.user, name, org)
    status = 422 if error else 200
    return _page(
        request, "ledger.html", session, status=status, ledger=ledger, versions=versions, error=error, text=text
    )
