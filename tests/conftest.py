"""Fixtures every test folder may use: an isolated data home, a store, the CLI,
a function run in-process (`sandbox_run`) and a loopback HTTP receiver (`receiver`).

Each test gets its own LOGIC_HOME under tmp_path and an environment without
any other LOGIC_* variable, so nothing leaks between tests or xdist workers,
and nothing ever touches the real ~/.logic.

The store runs on SQLite unless a test folder overrides `backend` (tests/store,
the service's tests): then each test runs on both, the PostgreSQL case in a database
of its own on a throwaway cluster (tests/pg_cluster.py) that each xdist worker starts
once, or on LOGIC_TEST_POSTGRES_URL's server when that is set. Without PostgreSQL
installed those cases skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runtime.sandbox.testing import run_source
from store import Settings, Store
from store.backend import open_backend
from tests.pg_cluster import pg_bin, start_cluster
from tests.receiver import Receiver

BACKENDS = ["sqlite", "postgresql"]  # for `backend` overrides: @pytest.fixture(params=BACKENDS)
_databases = itertools.count()


@pytest.fixture(autouse=True)
def logic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, not yet created data home; also exported as LOGIC_HOME."""
    for name in list(os.environ):
        if name.startswith("LOGIC_"):
            monkeypatch.delenv(name)
    home = tmp_path / "logic-home"
    monkeypatch.setenv("LOGIC_HOME", str(home))
    # Test receivers listen on 127.0.0.1; tests of the refusal set it back to 0.
    monkeypatch.setenv("LOGIC_WEBHOOK_ALLOW_PRIVATE", "1")
    return home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked sqlite_only keeps only its SQLite case, one marked postgresql_only its
    PostgreSQL case (the other is deselected: it does not apply, so it is not a skip)."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("backend") if params is not None else None
        wrong = (backend == "postgresql" and item.get_closest_marker("sqlite_only")) or (
            backend == "sqlite" and item.get_closest_marker("postgresql_only")
        )
        (dropped if wrong else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server's URL (its `postgres` database) for this xdist worker."""
    url = os.environ.get("LOGIC_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs it): the PostgreSQL cases cannot run")
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql): PostgreSQL cases skipped")
    cluster = start_cluster()
    try:
        yield cluster.url()
    finally:
        cluster.destroy()


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """An empty database of this test's own on the PostgreSQL server; dropped after it."""
    import psycopg

    name = f"logic_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = pg_server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def backend() -> str:
    """Which database the test's store uses: SQLite, unless a folder overrides this."""
    return "sqlite"


@pytest.fixture
def settings(
    logic_home: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_database")
        monkeypatch.setenv("LOGIC_DATABASE_URL", url)  # the CLI and Settings() made by the code under test
        return Settings(home=logic_home, database_url=url)
    return Settings(home=logic_home)


@pytest.fixture
def store(settings: Settings):
    """An initialized store (`logic init` done): key file, database, admin user."""
    opened, _ = Store.initialize(settings)
    yield opened
    opened.close()


@pytest.fixture
def admin(store: Store):
    return store.identity.first_admin()


class Cli:
    """Runs `logic --home HOME ...` in-process; unexpected exceptions fail the test."""

    def __init__(self, home: Path):
        self.home = home

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict | None = None) -> Result:
        from runtime.cli import cli

        result = CliRunner().invoke(cli, ["--home", str(self.home), *args], input=input, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result


@pytest.fixture
def cli(logic_home: Path) -> Cli:
    return Cli(logic_home)


@pytest.fixture
def db_rows(settings: Settings):
    """A function returning every row of every table, to prove a refused command changed nothing."""

    def snapshot() -> dict[str, list[tuple]]:
        db = open_backend(settings)
        try:
            if db.dialect == "sqlite":
                catalog = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            else:
                catalog = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            tables = [r[0] for r in db.all(catalog)]
            rows = {t: sorted(map(tuple, db.all(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
            rows["schema version"] = [(db.schema_version,)]
            return rows
        finally:
            db.close()

    return snapshot


@pytest.fixture
def sandbox_run():
    """`run_source`: compile and run source in-process against a RecordingHost (no worker)."""
    return run_source


@pytest.fixture
def receiver():
    """A loopback HTTP receiver (tests/receiver.py) recording what arrives; closed after the test."""
    with Receiver() as r:
        yield r
