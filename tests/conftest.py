"""Fixtures every test folder may use: an isolated data home, a store, the CLI,
a function run in-process (`sandbox_run`) and a loopback HTTP receiver (`receiver`).

Each test gets its own LOGIC_HOME under tmp_path and an environment without
any other LOGIC_* variable, so nothing leaks between tests or xdist workers,
and nothing ever touches the real ~/.logic.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runtime.sandbox.testing import run_source
from store import Settings, Store
from tests.receiver import Receiver


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


@pytest.fixture
def settings(logic_home: Path) -> Settings:
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
        conn = sqlite3.connect(settings.db_path)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            rows = {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
            rows["PRAGMA user_version"] = [conn.execute("PRAGMA user_version").fetchone()]
            return rows
        finally:
            conn.close()

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
