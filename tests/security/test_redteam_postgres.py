"""Red team of the PostgreSQL backend and of many nodes on one database (issue 14).

Attacks, each a test: plaintext in PostgreSQL's own files; the database password in any
output, answer or log line; hostile input (NUL, lone surrogates, integers past 64 bits) in
every field that reaches SQL, answered alike by both backends; one tenant against another
across two nodes (fair turns, every route, a forged doorbell); a node whose link to the
database is cut mid-run; lock names built from tenant text and lock order.

"hole:" in a docstring marks an attack that succeeded before the fix beside it (in this
change); `xfail(strict=True)` marks one that still succeeds, its fix in a file this red
team does not own (the reason names the function and the change).

Most tests run on PostgreSQL only (this module's `backend`); the bad-input ones build a
SQLite world beside the PostgreSQL one and compare their answers.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from runtime.execution.ledger_broker import LedgerBroker
from runtime.execution.redactor import Redactor
from runtime.http.app import create_app
from runtime.manifest import files_from_json
from runtime.service import Service
from runtime.workers.testing import InProcessPool
from store import Settings, Store
from store.clock import utcnow
from store.errors import StoreBusy, StoreError
from tests.pg_cluster import Cluster, free_port, pg_bin, start_cluster
from tests.security.test_secret_at_rest import leaks
from tests.support import in_process_service

LOGIC = [sys.executable, "-m", "runtime.cli"]
_names = itertools.count()


@pytest.fixture
def backend() -> str:
    return "postgresql"


def _database_url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.get_secret_value()


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


@pytest.fixture
def own_cluster(pg_server: str) -> Iterator[Cluster]:
    """A cluster only this test uses (its files are read, it is stopped); pg_server's skip rules."""
    assert pg_bin() is not None
    cluster = start_cluster()
    yield cluster
    cluster.destroy()


def _sql(url: str, *statements: str | tuple[str, tuple]) -> list[Any]:
    """Each statement (or (statement, params)) in turn on one plain session (autocommit);
    the last one's rows."""
    rows: list[Any] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            sql, params = statement if isinstance(statement, tuple) else (statement, None)
            cursor = conn.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else []
    return rows


# 1. plaintext at rest in PostgreSQL's files ---------------------------------------------

OLD_VALUE = "0ld-pg-AT-REST-91c2e7d4-\u00fcber"
NEW_VALUE = "n3w-pg-AT-REST-5b0a6f13-\u2603"
ORG_VALUE = "0rg-pg-AT-REST-d7e4a2c9"
VISIBLE = "visible-marker-3e8f0b6a"  # stored as plain text on purpose: proves the scan sees text

READER = """
def main(event, secrets):
    print("read", secrets.AT_REST)
    return {"echo": secrets.AT_REST, "data": event.data if event else None}
"""


def _data_files(cluster: Cluster) -> bytes:
    parts = []
    for folder in ("base", "pg_wal"):
        for path in sorted((cluster.data / folder).rglob("*")):
            if path.is_file():
                parts.append(path.read_bytes())
    return b"".join(parts)


def test_no_value_old_version_or_sealed_input_in_postgresqls_data_files(own_cluster, logic_home):
    settings = Settings(home=logic_home, database_url=SecretStr(own_cluster.url()))
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    try:
        admin = service.actor()
        service.create_secret(admin, "AT_REST", OLD_VALUE)
        service.update_secret(admin, "AT_REST", NEW_VALUE)  # OLD_VALUE is now a kept version
        service.create_org(admin, "vault")
        service.create_secret(admin, "AT_REST", ORG_VALUE, org="vault")
        files = files_from_json({"name": "reader", "secrets": ["AT_REST"], "source": READER})
        service.deploy_function(admin, files)
        # The run's input carries the value (a publisher pasted it): masked in the record,
        # sealed in runs.input; the replay reads the sealed copy.
        data = json.dumps({"pasted": NEW_VALUE, "note": VISIBLE})
        run = service.execute_function(admin, "reader", event_name="probe", data=data)
        assert run["status"] == "success" and NEW_VALUE not in json.dumps(run)
        replay = service.replay_run(admin, run["id"])
        assert replay["status"] == "success" and replay["replay_of"] == run["id"]
        service.store.rotate_data_key()  # every value and version re-sealed: more WAL
    finally:
        service.close()
    _sql(own_cluster.url(), "CHECKPOINT")
    disk = _data_files(own_cluster)
    assert VISIBLE.encode() in disk  # the control: text stored in the clear is found
    for value in (OLD_VALUE, NEW_VALUE, ORG_VALUE):
        assert leaks(disk, value) == [], value


# 2. the database password ----------------------------------------------------------------

PASSWORD = "Pw-scram-6d2b9f41-Hunter"


@pytest.fixture
def password_cluster(own_cluster: Cluster) -> Cluster:
    """The cluster's user needs PASSWORD over TCP (scram-sha-256); its socket stays trust."""
    _sql(
        own_cluster.url(),
        "SET password_encryption = 'scram-sha-256'",
        f"ALTER ROLE {own_cluster.user} PASSWORD '{PASSWORD}'",
        "CREATE DATABASE logic",
    )
    (own_cluster.data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
    )
    socket_url = f"host={own_cluster.root} port={own_cluster.port} user={own_cluster.user} dbname=postgres"
    _sql(socket_url, "SELECT pg_reload_conf()")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(own_cluster.url()).close()  # the password is asked for now
    return own_cluster


def _url(cluster: Cluster, password: str = PASSWORD, port: int | None = None) -> str:
    return f"postgresql://{cluster.user}:{password}@127.0.0.1:{port or cluster.port}/logic"


def _forms(password: str) -> list[str]:
    return [password, quote(password, safe=""), base64.b64encode(password.encode()).decode()]


def _shows(text: str, *passwords: str) -> list[str]:
    return [form for password in passwords for form in _forms(password) if form in text]


def _logic(home: Path, *args: str, url: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    """`logic ARGS` in a process of its own, its environment holding only what is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env.update({"LOGIC_HOME": str(home), "LOGIC_DATABASE_URL": url, "LOGIC_BUSY_TIMEOUT_MS": "1000", **extra})
    return subprocess.run([*LOGIC, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_the_password_is_in_no_command_output(password_cluster, tmp_path):
    url = _url(password_cluster)
    home = tmp_path / "home"
    outputs = [
        _logic(home, "init", url=url),
        _logic(home, "init", "--json", url=url),  # already initialized
        _logic(home, "db", "migrate", url=url),
        _logic(home, "db", "migrate", "--json", url=url),
        _logic(home, "secrets", "list", "--json", url=url),
        _logic(home, "audit", "--changes", "--json", url=url),
    ]
    assert [o.returncode for o in outputs] == [0] * len(outputs), [o.stderr for o in outputs]
    assert f"127.0.0.1:{password_cluster.port}/logic" in outputs[0].stdout  # where it is, without who
    for out in outputs:
        assert _shows(out.stdout + out.stderr, PASSWORD) == [], out.args
    settings = Settings(home=home, database_url=SecretStr(url))
    assert _shows(repr(settings) + str(settings) + settings.database_shown, PASSWORD) == []


class Serving:
    """`logic serve` in a process of its own; stdout and stderr collected in files."""

    def __init__(self, home: Path, url: str, **extra: str):
        self.port = free_port()
        self.out = home.parent / f"serve-{self.port}.out"
        self.err = home.parent / f"serve-{self.port}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
        env.update({"LOGIC_HOME": str(home), "LOGIC_DATABASE_URL": url, **extra})
        self.proc = subprocess.Popen(
            [*LOGIC, "serve", "--port", str(self.port)], env=env, stdout=self.out.open("w"), stderr=self.err.open("w")
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        for _ in range(400):  # the process starts its zygote and its pool first
            if self.proc.poll() is not None:
                raise AssertionError(f"logic serve exited: {self.err.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                threading.Event().wait(0.05)
        raise AssertionError(f"logic serve did not come up: {self.err.read_text()}")

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.out.read_text() + self.err.read_text()


@pytest.fixture
def serving(password_cluster, tmp_path) -> Iterator[tuple[Serving, str]]:
    home = tmp_path / "home"
    init = _logic(home, "init", "--json", url=_url(password_cluster))
    assert init.returncode == 0, init.stderr
    server = Serving(
        home,
        _url(password_cluster),
        LOGIC_WORKERS="2",
        LOGIC_DELIVERY_THREADS="2",
        LOGIC_DISPATCHER_POLL_S="0.2",
        LOGIC_BUSY_TIMEOUT_MS="1000",
    )
    try:
        yield server, json.loads(init.stdout)["token"]
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=30)


def test_logic_serve_shows_no_password_while_the_database_is_up_down_and_back(serving, password_cluster):
    server, token = serving
    server.wait_up()
    auth = {"Authorization": f"Bearer {token}"}
    answers = [httpx.get(server.url + "/healthz"), httpx.get(server.url + "/v1/secrets", headers=auth)]
    password_cluster.stop()
    down = [
        httpx.get(server.url + "/healthz", timeout=30),
        httpx.get(server.url + "/v1/secrets", headers=auth, timeout=30),
        httpx.post(server.url + "/v1/events", headers=auth, json={"name": "while-down"}, timeout=30),
        httpx.get(server.url + "/healthz", timeout=30),
    ]
    password_cluster.start()
    for _ in range(400):  # the pool reconnects in the background, backing off
        if httpx.get(server.url + "/healthz", timeout=30).status_code == 200:
            break
    back = httpx.get(server.url + "/v1/secrets", headers=auth, timeout=30)
    logged = server.stop()
    assert [a.status_code for a in answers] == [200, 200]
    assert down[-1].status_code == 503 and down[-1].json()["reason"] == "database unreachable"
    assert all(a.status_code == 503 and "error" in a.json() for a in down[1:3]), [a.text for a in down]
    assert back.status_code == 200
    assert f"database: postgresql://127.0.0.1:{password_cluster.port}/logic" in logged  # the startup line
    for text in [logged, *(a.text for a in answers + down + [back])]:
        assert _shows(text, PASSWORD) == [], text[:300]
    # hole: the scheduler logged a traceback every tick while the database was down.
    assert "scheduler tick failed" not in logged and "event=scheduler_tick_failed" in logged


def test_logic_serve_logs_an_outage_in_one_line_per_failure_not_tracebacks(serving, password_cluster):
    server, _ = serving
    server.wait_up()
    password_cluster.stop()
    for _ in range(3):
        httpx.get(server.url + "/healthz", timeout=30)  # the delivery threads poll meanwhile
    password_cluster.start()
    logged = server.stop()
    assert "Traceback" not in logged, logged[-2000:]


def test_a_wrong_password_or_an_unreachable_server_is_one_clear_error_line(password_cluster, tmp_path):
    wrong = "Wr0ng-pw-44b1c0de"
    closed_port = free_port()
    for args, url in (
        (("init",), _url(password_cluster, wrong)),
        (("init", "--json"), _url(password_cluster, wrong)),
        (("serve", "--port", str(free_port())), _url(password_cluster, wrong)),
        (("init",), _url(password_cluster, port=closed_port)),
        (("serve", "--port", str(free_port())), _url(password_cluster, port=closed_port)),
        (("db", "migrate"), _url(password_cluster, port=closed_port)),
    ):
        out = _logic(tmp_path / "home", *args, url=url)
        text = out.stdout + out.stderr
        assert out.returncode == 1, (args, text)
        assert "Traceback" not in text, (args, text)
        assert _shows(text, PASSWORD, wrong) == [], (args, text)
        last = text.strip().splitlines()[-1]
        why = "refused the login" if wrong in url else "cannot be reached"
        assert last.startswith("Error: the database at 127.0.0.1:") and why in last, (args, last)


def test_a_wrong_password_is_named_as_a_refused_login(password_cluster, tmp_path):
    out = _logic(tmp_path / "home", "init", url=_url(password_cluster, "Wr0ng-pw-44b1c0de"))
    last = (out.stdout + out.stderr).strip().splitlines()[-1]
    assert "password" in last or "login" in last, last


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://logic:50%off-Hunter2@127.0.0.1:5432/logic",  # a raw % in a generated password
        "postgresql://logic:Hunter2%00x@127.0.0.1:5432/logic",
        "postgresql://logic:Hunter2@[::1/logic",
        "host=127.0.0.1 port=5432 user=logic password=Hunter2 dbname=logic",  # libpq's key=value form
    ],
    ids=["percent", "percent-00", "bracket", "key-value"],
)
def test_a_url_the_driver_would_quote_back_is_refused_without_the_password(url, tmp_path):
    """hole: libpq's parse errors quote the token they stop at (for a raw % in the password,
    the password) or the whole URL, and `logic init` printed them in a traceback; the
    key=value form was printed as it was, password and all, as `database:` by init and serve."""
    for args in (("init",), ("init", "--json"), ("serve",), ("db", "migrate")):
        out = _logic(tmp_path / "home", *args, url=url)
        text = out.stdout + out.stderr
        assert out.returncode == 2 and "Traceback" not in text, (args, text)
        assert "Hunter2" not in text, (args, text)
        assert "Error: invalid settings: LOGIC_DATABASE_URL: " in text, (args, text)


def test_a_host_libpq_cannot_read_is_a_clear_error_without_the_password(tmp_path):
    out = _logic(tmp_path / "home", "init", url="postgresql://logic:Hunter2@[::1]x/logic")
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "Hunter2" not in text, text


# 3. bad input of every kind, on both backends -------------------------------------------

EVIL = {"nul": "a\x00b", "surrogate": "\ud800", "2**63": str(2**63), "-2**63-1": str(-(2**63) - 1), "1e30": str(10**30)}
NUMBERS = {"2**63": 2**63, "-2**63-1": -(2**63) - 1, "1e30": 10**30}
SOURCE = "def main(event):\n    return 1\n"


def _cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _requests() -> Iterator[tuple[str, str, str, Any]]:
    """(id, method, path with query, JSON body or None): each hostile value in each field."""
    for kind, bad in EVIL.items():
        q = quote(bad, safe="", errors="surrogatepass")  # as a client sends it: %00, %ED%A0%80
        yield from (
            (kind, "GET", f"/v1/secrets/{q}", None),
            (kind, "PUT", f"/v1/secrets/{q}", {"value": "v"}),
            (kind, "DELETE", f"/v1/secrets/{q}", None),
            (kind, "POST", "/v1/secrets", {"name": bad, "value": "v"}),
            (kind, "POST", "/v1/secrets", {"name": "NEW_ONE", "value": bad}),
            (kind, "PUT", "/v1/secrets/API_KEY", {"value": bad}),
            (kind, "GET", f"/v1/secrets/{q}/versions", None),
            (kind, "POST", f"/v1/secrets/API_KEY/versions/{q}/restore", None),
            (kind, "POST", "/v1/secrets:import", {"content": f"IMPORTED={bad}\n"}),
            (kind, "GET", f"/v1/logic/functions/{q}", None),
            (kind, "DELETE", f"/v1/logic/functions/{q}", None),
            (kind, "GET", f"/v1/logic/functions/fn/runs?limit={q}", None),
            (kind, "GET", f"/v1/logic/functions/fn/runs?cursor={q}", None),
            (kind, "GET", f"/v1/logic/functions/fn/runs/{q}", None),
            (kind, "GET", f"/v1/logic/functions/{q}/runs", None),
            (kind, "POST", f"/v1/logic/runs/{q}/replay", None),
            (kind, "POST", "/v1/events", {"name": bad, "data": "d"}),
            (kind, "POST", "/v1/events", {"name": "go", "data": bad}),
            (kind, "GET", f"/v1/env/{q}", None),
            (kind, "PUT", f"/v1/env/{q}", {"value": "v"}),
            (kind, "PUT", "/v1/env/E2", {"value": bad}),
            (kind, "DELETE", f"/v1/env/{q}", None),
            (kind, "POST", "/v1/ledgers", {"ledger": {"name": bad}}),
            (kind, "POST", "/v1/ledgers", {"ledger": {"name": "led-new", "description": bad}}),
            (kind, "PUT", "/v1/ledgers/led", {"ledger": {"description": bad}}),
            (kind, "GET", f"/v1/ledgers/{q}", None),
            (kind, "PUT", "/v1/ledgers/led/instances/owner", {"instance": {"data": {"k": bad, bad: 1}}}),
            (kind, "GET", f"/v1/ledgers/led/instances/owner/versions/{q}", None),
            (kind, "GET", f"/v1/integrations/{q}", None),
            (kind, "GET", f"/v1/integrations/{q}/logs", None),
            (kind, "POST", "/v1/integrations", {"name": bad, "event": "go", "url": "http://127.0.0.1:9/x"}),
            (kind, "POST", "/v1/integrations", {"name": "hook", "event": bad, "url": "http://127.0.0.1:9/x"}),
            (kind, "POST", "/v1/integrations", {"name": "hook", "event": "go", "url": "http://127.0.0.1:9/" + bad}),
            (
                kind,
                "POST",
                "/v1/integrations",
                {"name": "h2", "event": "go", "url": "http://x/", "headers": {"X": bad}},
            ),
            (kind, "GET", f"/v1/audit?secret={q}", None),
            (kind, "GET", f"/v1/audit?cursor={q}", None),
            (kind, "GET", f"/v1/audit/changes?cursor={q}", None),
            (kind, "GET", f"/v1/orgs/{q}/secrets", None),
            (kind, "POST", "/v1/logic/functions", {"name": bad, "source": SOURCE}),
            (kind, "POST", "/v1/logic/functions", {"name": "fn2", "source": SOURCE + "# " + bad}),
            (kind, "POST", "/v1/logic/functions", {"name": "fn2", "description": bad, "source": SOURCE}),
            (
                kind,
                "POST",
                "/v1/logic/functions",
                {"name": "fn2", "source": SOURCE, "triggers": [{"type": "event", "event_name": bad}]},
            ),
            (
                kind,
                "POST",
                "/v1/logic/functions",
                {"name": "fn2", "source": SOURCE, "triggers": [{"type": "schedule", "cron": bad}]},
            ),
            (
                kind,
                "POST",
                "/v1/logic/execute",
                {"name": "fn2", "source": SOURCE, "event": {"name": "go", "data": bad}},
            ),
        )
    for kind, number in NUMBERS.items():
        yield from (
            (kind, "GET", f"/v1/logic/functions/fn/runs?cursor={_cursor('2026-01-01T00:00:00.000000Z', number)}", None),
            (kind, "GET", f"/v1/audit?cursor={_cursor('2026-01-01T00:00:00.000000Z', number)}", None),
            (kind, "GET", f"/v1/audit/changes?cursor={_cursor(number)}", None),
            (kind, "GET", f"/v1/integrations/1/logs?cursor={_cursor(number)}", None),
            (kind, "POST", f"/v1/secrets/API_KEY/versions/{number}/restore", None),
            (kind, "PUT", "/v1/ledgers/led/instances/owner", {"instance": {"data": {"k": number}}}),
            (kind, "POST", "/v1/logic/functions", {"name": "fn2", "source": SOURCE, "version": number}),
            (kind, "POST", "/v1/integrations", {"name": "h3", "event": "go", "url": "http://x/", "timeout": number}),
        )


CREATED = {"NEW_ONE", "led-new", "hook", "h2", "h3", "fn2"}  # names the requests create


def _own_names(body: Any, n: int) -> Any:
    """`body` with each name it would create made its own (request n's): a request that
    created "h2" made every later request for "h2" a 409, so which hostile value in it was
    checked depended on the order the requests ran in (a lone surrogate in a webhook header
    was stored, then a 500, and only showed when xdist split the module differently)."""
    if isinstance(body, dict):
        return {
            k: (f"{v}_{n}" if v == "NEW_ONE" else f"{v}-{n}") if k == "name" and v in CREATED else _own_names(v, n)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [_own_names(v, n) for v in body]
    return body


REQUESTS = [(kind, method, path, _own_names(body, n)) for n, (kind, method, path, body) in enumerate(_requests())]


class World:
    """One backend's store with a little of everything, and an API client for its admin."""

    def __init__(self, settings: Settings):
        _, init = Store.initialize(settings)
        self.service = in_process_service(settings)
        admin = self.service.actor()
        self.service.create_secret(admin, "API_KEY", "v1")
        self.service.update_secret(admin, "API_KEY", "v2")
        fn = {"name": "fn", "source": SOURCE, "triggers": [{"type": "event", "event_name": "go"}]}
        self.service.deploy_function(admin, files_from_json(fn))
        self.service.execute_function(admin, "fn")
        self.service.create_org(admin, "acme")
        self.service.create_ledger(admin, "led", "d")
        self.service.set_env(admin, "E1", "x")
        self.client = TestClient(create_app(self.service), raise_server_exceptions=False)
        self.auth = {"Authorization": f"Bearer {init.token}", "content-type": "application/json"}

    def ask(self, method: str, path: str, body: Any) -> tuple[int, str | None]:
        content = None if body is None else json.dumps(body)  # \u0000 and \ud800 as JSON escapes
        answer = self.client.request(method, path, content=content, headers=self.auth)
        error = answer.json().get("error") if answer.headers.get("content-type") == "application/json" else None
        return answer.status_code, error if answer.status_code >= 400 else None

    def rows(self) -> dict[str, list[tuple]]:
        db = self.service.store.db
        if db.dialect == "sqlite":
            catalog = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        else:
            catalog = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        tables = [r[0] for r in db.all(catalog)]
        return {t: sorted(map(tuple, db.all(f'SELECT * FROM "{t}"')), key=repr) for t in tables}

    def close(self) -> None:
        self.client.close()
        self.service.close()


@pytest.fixture(scope="module")
def worlds(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    """A SQLite world and a PostgreSQL world, built alike, shared by the module's requests."""
    name = _unique("logic_redteam_parity")
    _sql(pg_server, f'CREATE DATABASE "{name}"')
    with pytest.MonkeyPatch.context() as mp:
        for variable in list(os.environ):
            if variable.startswith("LOGIC_"):
                mp.delenv(variable)
        mp.setenv("LOGIC_WEBHOOK_ALLOW_PRIVATE", "1")
        homes = {kind: Path(tmp_path_factory.mktemp(f"parity-{kind}")) / "home" for kind in ("sqlite", "postgresql")}
        built = {
            "sqlite": World(Settings(home=homes["sqlite"])),
            "postgresql": World(
                Settings(home=homes["postgresql"], database_url=SecretStr(pg_server.rpartition("/")[0] + "/" + name))
            ),
        }
    try:
        yield built
    finally:
        for world in built.values():
            world.close()
        _sql(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    ("kind", "method", "path", "body"), REQUESTS, ids=[f"{r[0]}-{r[1]}-{n}" for n, r in enumerate(REQUESTS)]
)
def test_hostile_input_is_a_clear_4xx_that_writes_nothing_and_both_backends_agree(worlds, kind, method, path, body):
    """hole (each fixed here): a NUL in a path or a query was 404 on SQLite and 422 "cannot be
    stored" on PostgreSQL; a NUL in an environment value or a ledger description was stored
    by SQLite and refused by PostgreSQL; a lone surrogate in event data or an event name, a
    ledger description or a test run's event was a 500 on both (and one in a publish rolled
    back its whole group commit, every publish in it then written again one by one,
    whoever's they were)."""
    answers = {}
    for backend_name, world in worlds.items():
        before = world.rows()
        status, error = world.ask(method, path, body)
        assert status < 500, (backend_name, status, error)
        if status >= 400:
            assert world.rows() == before, f"{backend_name}: a refused request wrote something"
            assert error, backend_name  # a message, one line, saying what is wrong
        answers[backend_name] = (status, error)
    assert answers["sqlite"] == answers["postgresql"]


def test_the_hostile_requests_cover_every_kind_and_are_refused_somewhere(worlds):
    """The table above can fail: each kind of value is refused by at least one route."""
    refused = {kind for kind, method, path, body in REQUESTS if worlds["sqlite"].ask(method, path, body)[0] >= 400}
    assert refused == set(EVIL) | set(NUMBERS)


@pytest.mark.parametrize(
    "args",
    [
        ["secrets", "get", "\udcff"],
        ["functions", "get", "\udcff"],
        ["runs", "show", "\udcff"],
        ["env", "get", "\udcff"],
        ["ledgers", "get", "\udcff"],
        ["ledgers", "create", "led2", "--description", "\udcff"],
        ["audit", "--secret", "\udcff"],
        ["publish", "\udcff"],
        ["tokens", "create", "--label", "\udcff"],
        ["integrations", "get", "\udcff"],
        ["secrets", "list", "--org", "\udcff"],
        ["--as", "\udcff", "secrets", "list"],
    ],
    ids=lambda args: "-".join(a for a in args if a.isascii())[:40],
)
def test_command_line_text_that_is_not_utf8_is_a_usage_error_on_both_backends(cli, settings, db_rows, args):
    """hole: bytes that are not UTF-8 in an argument arrive as lone surrogates (Python's
    surrogateescape); every command that took one to the database died in a traceback."""
    assert cli("init").exit_code == 0
    before = db_rows()
    answers = []
    for url in (None, _database_url(settings)):  # SQLite in the same home, then PostgreSQL
        env = {"LOGIC_DATABASE_URL": url or ""}
        if url is None:
            assert cli("init", env=env).exit_code == 0
        result = cli(*args, env=env)
        answers.append((result.exit_code, result.output.strip().splitlines()[-1]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 2 and "is not valid UTF-8 text" in answers[0][1], answers
    assert db_rows() == before


def test_a_nul_in_an_env_file_is_refused_alike_on_both_backends(cli, settings, db_rows, tmp_path):
    """hole: `logic env set --value-file` stored a NUL on SQLite; PostgreSQL refused it."""
    value_file = tmp_path / "value"
    value_file.write_bytes(b"before\x00after")
    assert cli("init").exit_code == 0
    assert cli("init", env={"LOGIC_DATABASE_URL": ""}).exit_code == 0
    before = db_rows()
    answers = []
    for url in ("", _database_url(settings)):
        result = cli("env", "set", "WITH_NUL", "--value-file", str(value_file), env={"LOGIC_DATABASE_URL": url})
        answers.append((result.exit_code, result.output.strip()))
    assert answers[0] == answers[1] and answers[0][0] == 1, answers
    assert "NUL" in answers[0][1]
    assert db_rows() == before


# 4. one tenant against another, on two nodes ------------------------------------------


class Starts:
    """The runs started on every node, in order: (node, owner)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def note(self, node: str, owner: str) -> None:
        with self._changed:
            self.seen.append((node, owner))
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[str, str]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.seen) >= count, timeout), self.seen
            return list(self.seen)


class GatedPool(InProcessPool):
    """InProcessPool that notes each run as it starts and holds the runs of `gated` owners
    until one of the owner's permits is let go (`let_one`), or all of them (`open`)."""

    def __init__(self, settings: Settings, node: str, starts: Starts, gated: frozenset[str] = frozenset()):
        super().__init__(settings)
        self.node = node
        self.starts = starts
        self.gated = gated
        self._permits: dict[str, threading.Semaphore] = {}
        self._permits_lock = threading.Lock()
        self._opened = threading.Event()

    def _permit(self, owner: str) -> threading.Semaphore:
        with self._permits_lock:
            return self._permits.setdefault(owner, threading.Semaphore(0))

    def let_one(self, owner: str) -> None:
        self._permit(owner).release()

    def open(self) -> None:
        self._opened.set()
        for owner in self.gated:
            for _ in range(1000):
                self._permit(owner).release()

    def run(self, job, on_secret, on_start=None, on_ledger=None):
        def started() -> None:
            if on_start is not None:
                on_start()
            self.starts.note(self.node, job.owner)
            if job.owner in self.gated and not self._opened.is_set():
                self._permit(job.owner).acquire()

        return super().run(job, on_secret, on_start=started, on_ledger=on_ledger)


def _node(settings: Settings, name: str, starts: Starts, gated: frozenset[str] = frozenset(), **changes: Any):
    node_settings = settings.model_copy(update={"node_id": name, **changes})
    pool = GatedPool(node_settings, name, starts, gated)
    return Service(Store.open(node_settings), pool=pool), pool


def _deploy(service: Service, who, name: str, event: str, source: str = SOURCE) -> Any:
    files = files_from_json({"name": name, "source": source, "triggers": [{"type": "event", "event_name": event}]})
    return service.deploy_function(who, files)


def test_a_flood_on_both_nodes_leaves_the_next_free_slot_of_each_node_to_the_other_tenant(settings):
    """Fair turns are cluster-wide: alice's 30 pending deliveries hold every slot of both
    nodes; when one of a node's slots frees, bob's delivery (just published) is the next to
    start there, on node a as on node b, before any more of alice's."""
    settings = settings.model_copy(update={"workers": 4, "delivery_threads": 2})  # 2 runs per owner per node
    Store.initialize(settings)[0].close()
    starts = Starts()
    a, pool_a = _node(settings, "node-a", starts, frozenset({"user:alice"}))
    b, pool_b = _node(settings, "node-b", starts, frozenset({"user:alice"}))
    dispatchers = []
    try:
        admin = a.actor()
        alice, bob = a.create_user(admin, "alice"), a.create_user(admin, "bob")
        _deploy(a, alice, "work", "go")
        _deploy(a, bob, "work", "go")
        for n in range(30):
            (a if n % 2 else b).publish_event(alice, "go", str(n))
        dispatchers = [node.dispatcher(threads=2, poll_s=0.05) for node in (a, b)]
        for dispatcher in dispatchers:
            dispatcher.start()
        first = starts.wait_for(4)
        assert sorted(first) == [("node-a", "user:alice")] * 2 + [("node-b", "user:alice")] * 2

        a.publish_event(bob, "go", "bob-1")  # published on node a; both nodes' slots are alice's
        pool_b.let_one("user:alice")
        assert starts.wait_for(5)[4] == ("node-b", "user:bob")
        assert starts.wait_for(6)[5] == ("node-b", "user:alice")  # bob done: alice's turn again
        b.publish_event(bob, "go", "bob-2")
        pool_a.let_one("user:alice")
        assert starts.wait_for(7)[6] == ("node-a", "user:bob")
    finally:
        pool_a.open()
        pool_b.open()
        for dispatcher in dispatchers:
            dispatcher.stop(timeout=30)
        a.close()
        b.close()


def test_turns_follow_the_whole_clusters_runs_not_one_nodes(settings):
    """Node b runs one of bob's and one of alice's, node a two of alice's; when node b's
    alice run ends, node b counts alice 0 and bob 1 of its own, the cluster alice 2 and
    bob 1: the next start on node b is bob's (one node's counts would pick alice's)."""
    settings = settings.model_copy(update={"workers": 4, "delivery_threads": 2})
    Store.initialize(settings)[0].close()
    starts = Starts()
    both = frozenset({"user:alice", "user:bob"})
    a, pool_a = _node(settings, "node-a", starts, both)
    b, pool_b = _node(settings, "node-b", starts, both)
    dispatchers = []
    try:
        admin = a.actor()
        alice, bob = a.create_user(admin, "alice"), a.create_user(admin, "bob")
        _deploy(a, alice, "work", "go")
        _deploy(a, bob, "work", "go")
        for n in range(30):
            a.publish_event(alice, "go", str(n))
        dispatchers = [node.dispatcher(threads=2, poll_s=0.05) for node in (a, b)]
        for dispatcher in dispatchers:
            dispatcher.start()
        assert sorted(starts.wait_for(4)) == [("node-a", "user:alice")] * 2 + [("node-b", "user:alice")] * 2
        a.publish_event(bob, "go", "bob-1")
        pool_b.let_one("user:alice")
        assert starts.wait_for(5)[4] == ("node-b", "user:bob")  # held: bob 1 running, on node b
        a.publish_event(bob, "go", "bob-2")
        pool_b.let_one("user:alice")
        assert starts.wait_for(6)[5] == ("node-b", "user:bob")
    finally:
        pool_a.open()
        pool_b.open()
        for dispatcher in dispatchers:
            dispatcher.stop(timeout=30)
        a.close()
        b.close()


BOB_SECRET = "bob-only-v4lue-2f81c7aa"
BOB_MARKERS = (BOB_SECRET, "bob-env-v4lue-0c3d", "bob-ledger-v4lue-9e1f", "bob-run-output-5a7b")


def test_a_tenant_reaches_none_of_anothers_work_through_any_route_of_the_other_node(settings):
    """Bob's function, runs, webhook, ledger, variables and secrets live on node a; alice,
    through node b's API, names each by id or name: 404 or 403, nothing of bob's in any
    answer, nothing of bob's changed; her event named like bob's trigger runs none of his."""
    Store.initialize(settings)[0].close()
    starts = Starts()
    a, _ = _node(settings, "node-a", starts)
    b, _ = _node(settings, "node-b", starts)
    try:
        admin = a.actor()
        alice, bob = a.create_user(admin, "alice"), a.create_user(admin, "bob")
        a.create_org(bob, "bobs-org")
        a.create_secret(bob, "BOB_ONLY", BOB_SECRET)
        a.create_secret(bob, "BOB_ONLY", BOB_SECRET, org="bobs-org")
        a.set_env(bob, "BOB_VAR", BOB_MARKERS[1])
        a.create_ledger(bob, "bob-ledger")
        a.write_ledger(bob, "bob-ledger", "replace", {"k": BOB_MARKERS[2]})
        source = f"def main(event):\n    return {BOB_MARKERS[3]!r}\n"
        bob_fn = _deploy(a, bob, "bobs", "bob-go", source)
        bob_run = a.execute_function(bob, "bobs")
        hook = a.create_integration(bob, {"name": "bob-hook", "event": "bob-go", "url": "http://127.0.0.1:9/x"})
        alice_fn = _deploy(a, alice, "alices", "alice-go")
        alice_run = a.execute_function(alice, "alices")
        token = b.create_token(b.actor(), for_user="alice")
        bob_rows = {t: a.store.db.all(f"SELECT * FROM {t} ORDER BY 1") for t in ("runs", "integrations", "ledgers")}

        client = TestClient(create_app(b), headers={"Authorization": f"Bearer {token}"})
        routes = [
            ("GET", f"/v1/logic/functions/{bob_fn.id}"),
            ("GET", "/v1/logic/functions/bobs"),
            ("GET", f"/v1/logic/functions/{bob_fn.id}/runs"),
            ("GET", f"/v1/logic/functions/{alice_fn.id}/runs/{bob_run['id']}"),
            ("GET", f"/v1/logic/functions/{bob_fn.id}/runs/{bob_run['id']}"),
            ("GET", f"/v1/logic/functions/{bob_fn.id}/runs/{bob_run['id']}/logs"),
            ("POST", f"/v1/logic/runs/{bob_run['id']}/replay"),
            ("POST", f"/v1/logic/functions/{alice_fn.id}/runs/{bob_run['id']}/replay"),
            ("PUT", f"/v1/logic/functions/{bob_fn.id}"),
            ("DELETE", f"/v1/logic/functions/{bob_fn.id}"),
            ("GET", f"/v1/integrations/{hook.id}"),
            ("GET", f"/v1/integrations/{hook.id}/logs"),
            ("PUT", f"/v1/integrations/{hook.id}"),
            ("DELETE", f"/v1/integrations/{hook.id}"),
            ("GET", "/v1/secrets/BOB_ONLY"),
            ("GET", "/v1/secrets/BOB_ONLY/versions"),
            ("GET", "/v1/audit?secret=BOB_ONLY"),
            ("GET", "/v1/env/BOB_VAR"),
            ("GET", "/v1/ledgers/bob-ledger"),
            ("GET", "/v1/ledgers/bob-ledger/instances/owner"),
            ("DELETE", "/v1/ledgers/bob-ledger"),
            ("GET", "/v1/orgs/bobs-org/secrets"),
            ("GET", "/v1/orgs/bobs-org/env"),
            ("GET", "/v1/orgs/bobs-org/logic/functions"),
            ("POST", "/v1/orgs/bobs-org/events"),
        ]
        bodies = {
            "PUT": {"name": "bobs", "source": SOURCE},
            "POST": {"name": "bob-go", "data": "x"},
        }
        for method, path in routes:
            body = bodies.get(method) if "replay" not in path else None
            if "integrations" in path and method == "PUT":
                body = {"name": "bob-hook", "event": "bob-go", "url": "http://127.0.0.1:9/y"}
            answer = client.request(method, path, json=body)
            assert answer.status_code in (403, 404), (method, path, answer.status_code, answer.text)
            assert not [m for m in BOB_MARKERS if m in answer.text], (method, path)
        for path in ("/v1/logic/functions", "/v1/secrets", "/v1/integrations", "/v1/env", "/v1/ledgers", "/v1/audit"):
            listing = client.get(path)
            assert listing.status_code == 200 and "bob" not in listing.text.lower(), (path, listing.text[:200])
        assert client.post("/v1/events", json={"name": "bob-go", "data": "x"}).status_code == 202
        assert b.dispatcher().drain() == 0  # alice's bob-go matches none of alice's triggers: nothing for bob's
        assert {t: a.store.db.all(f"SELECT * FROM {t} ORDER BY 1") for t in bob_rows} == bob_rows
        assert alice_run["status"] == "success"
    finally:
        a.close()
        b.close()


def _listener(store: Store) -> tuple[queue.Queue, threading.Event, threading.Thread]:
    rings: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = store.db.listen(rings.put, stop)
    assert rings.get(timeout=30) is None  # connected: "look at everything"
    return rings, stop, thread


def _forge(store: Store, payload: str) -> None:
    """The forged ring from a plain session, then a genuine one from "another node" (3 new)."""
    _sql(
        _database_url(store.settings),
        ("SELECT pg_notify('logic_deliveries', %s)", (payload,)),
        "SELECT pg_notify('logic_deliveries', 'other-node' || chr(10) || '3')",
    )


def _ring_arrives(rings: queue.Queue, count: int) -> bool:
    """Whether a ring of `count` arrives (the forged ones before it wake, with None or n)."""
    while True:
        try:
            if rings.get(timeout=10) == count:
                return True
        except queue.Empty:
            return False


@pytest.mark.parametrize(
    "payload",
    ["", "x\nnot-a-number", "\n", "x\n-3", "x\n99999999999999999999", "y" * 7999, "other-node\n\n\n5"],
    ids=["empty", "not-a-number", "newline", "negative", "huge", "8000-bytes", "newlines"],
)
def test_a_forged_doorbell_ring_from_a_plain_session_only_wakes(store, payload):
    """NOTIFY logic_deliveries from any session that can connect: whatever its payload, the
    listener at most wakes its threads (whose claims take only what is pending) and keeps
    listening: the genuine ring sent after it arrives."""
    rings, stop, thread = _listener(store)
    try:
        _forge(store, payload)
        assert _ring_arrives(rings, 3) and thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.mark.parametrize("payload", ["x\n\u00b2", "x\n" + "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_a_forged_ring_with_odd_digits_does_not_end_the_listener(store, payload):
    rings, stop, thread = _listener(store)
    try:
        _forge(store, payload)
        assert _ring_arrives(rings, 3) and thread.is_alive()
    finally:
        stop.set()


# 5. a node cut off from the database mid-run --------------------------------------------


def _deliveries(service: Service, event_id: str) -> list[tuple]:
    rows = service.store.db.all("SELECT id, status, claimed_by FROM deliveries WHERE event_id = ?", (event_id,))
    return [tuple(r) for r in rows]


@pytest.fixture
def node_role(settings: Settings, pg_server: str) -> Iterator[tuple[str, str]]:
    """A database role of node a's own (so its logins can be refused), and its URL."""
    role = _unique("node_a")
    _sql(pg_server, f"CREATE ROLE {role} LOGIN SUPERUSER")
    parts = urlsplit(_database_url(settings))
    url = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    yield role, url
    _sql(pg_server, f"ALTER ROLE {role} LOGIN")
    _sql(pg_server, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
    _sql(pg_server, f"DROP ROLE IF EXISTS {role}")


def test_a_node_cut_off_mid_run_writes_nothing_another_node_retries_and_the_first_recovers(
    settings, node_role, pg_server
):
    """Node a's sessions are ended from the server side (pg_terminate_backend on its
    application_name) and its logins refused while its run is under way: the run's commit
    fails and nothing of it is written; node b takes the delivery once the lease has run
    out and runs it once; node a's login comes back and the same process delivers again."""
    role, url = node_role
    settings = settings.model_copy(update={"delivery_lease_s": 2.0, "busy_timeout_ms": 1000})
    Store.initialize(settings)[0].close()
    starts = Starts()
    node_a = _unique("node-a")
    a, pool_a = _node(settings, node_a, starts, database_url=SecretStr(url))
    later = utcnow() + timedelta(minutes=5)  # node b's clock: node a's lease has long run out
    b = in_process_service(settings.model_copy(update={"node_id": "node-b"}), clock=lambda: later)
    try:
        admin = a.actor()
        pool_a.gated = frozenset({admin.owner})
        _deploy(a, admin, "once", "go", "def main(event):\n    return event.data\n")
        first = a.publish_event(admin, "go", "first")
        dispatcher = a.dispatcher(threads=1)
        failures: list[BaseException] = []

        def step() -> None:
            try:
                dispatcher.step()
            except BaseException as exc:  # the step's commit: expected to fail
                failures.append(exc)

        stepping = threading.Thread(target=step)
        stepping.start()
        assert starts.wait_for(1) == [(node_a, admin.owner)]  # node a's run is under way
        _sql(pg_server, f"ALTER ROLE {role} NOLOGIN")
        ended = _sql(
            pg_server,
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"logic-runtime {node_a}",),
            ),
        )
        assert ended and all(r[0] for r in ended)
        assert b.dispatcher().drain() == 1  # node b takes it over and runs it
        pool_a.open()
        stepping.join(timeout=60)
        assert len(failures) == 1 and isinstance(failures[0], StoreError), failures

        (delivery,) = _deliveries(b, first["id"])
        assert delivery[1:] == ("done", "node-b")
        runs = b.store.db.all("SELECT delivery_id FROM runs WHERE delivery_id IS NOT NULL")
        assert [r[0] for r in runs] == [delivery[0]]  # one run: node b's; nothing of node a's

        _sql(pg_server, f"ALTER ROLE {role} LOGIN")
        second = b.publish_event(admin, "go", "second")
        for _ in range(30):  # the pool reconnects with a backoff: a try may still find it empty
            try:
                dispatcher.leases.beat()  # what the heartbeat does: the node trusts its leases again
                if dispatcher.step():
                    break
            except StoreBusy:
                continue
        (again,) = _deliveries(a, second["id"])
        assert again[1:] == ("done", node_a)  # the same process, not restarted, delivers again
    finally:
        pool_a.open()
        a.close()
        b.close()


# 6. lock names and lock order ------------------------------------------------------------

# hashtext('env:user:a8ru9bv') = hashtext('keyring') = 1123001121: found offline in 42 s of
# one core by trying [a-z0-9]{7} names against PostgreSQL's hash_bytes (any name is a
# valid user name; anyone who may name a user or an org can pick one).
KEYRING_TWIN = "a8ru9bv"


def test_the_twin_name_hashes_like_the_keyring_lock(store):
    twins = store.db.one("SELECT hashtext('keyring'), hashtext(?)", (f"env:user:{KEYRING_TWIN}",))
    assert twins[0] == twins[1]


def test_a_tenant_named_like_a_lock_does_not_hold_up_everyones_secrets(store, settings):
    """Locks were keyed by hashtext(name) alone, fixed names and names built from tenant
    text in one 32-bit space: user a8ru9bv's variable writes (EnvStore.set locks 'env:' +
    owner) took the key ring's lock exclusively, so while one was in flight no secret, no
    run input and no rotation committed on any node. Locks are keyed by kind now
    (store/postgres.py lock_key, in 87198a8): the twin holds up nobody."""
    store.identity.create_user(KEYRING_TWIN)
    other = Store.open(settings.model_copy(update={"busy_timeout_ms": 500}))  # another node
    try:
        with store.transaction():  # the twin's variable write, in flight
            store.environment.set(f"user:{KEYRING_TWIN}", "COLOR", "blue")
            other.secrets.create("user:bob", "UNRELATED", "bobs-value")  # waits for the twin: StoreBusy
        assert other.secrets.reveal("user:bob", "UNRELATED").reveal() == "bobs-value"
    finally:
        other.close()


class _LockOrder:
    """A LedgerRepository that notes the order in which a commit locks its rows."""

    def __init__(self, ledgers: Any, locked: list[str]):
        self._ledgers = ledgers
        self._locked = locked

    def get(self, owner: str, name: str, *, for_write: bool = False) -> Any:
        if for_write:
            self._locked.append(name)
        return self._ledgers.get(owner, name, for_write=for_write)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledgers, name)


def test_a_runs_ledger_rows_are_locked_in_name_order_whatever_order_it_wrote(store):
    """hole: the rows were locked in the order the run wrote them: runs on two nodes that
    write the same ledgers in opposite orders each held a row the other waited for, and
    PostgreSQL broke the deadlock by failing one run's commit."""
    owner = "user:root"
    for name in ("zeta", "alpha", "mid"):
        store.ledgers.create(owner, name)
    locked: list[str] = []
    broker = LedgerBroker(_LockOrder(store.ledgers, locked), owner=owner)
    for name in ("zeta", "alpha", "mid", "zeta"):
        broker.call("set", name, json.dumps({"n": name}), "merge")
    with store.transaction():
        changes, problems = broker.commit(Redactor([]))
    assert problems == [] and locked == ["alpha", "mid", "zeta"]
    assert [c.name for c in changes] == ["zeta", "alpha", "mid"]  # the changes keep the run's order
    assert store.ledgers.get(owner, "zeta").data == {"n": "zeta"}
