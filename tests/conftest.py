"""Fixtures every test folder may use: an isolated data home, a store, the CLI.

Each test gets its own LOGIC_HOME under tmp_path and an environment without
any other LOGIC_* variable, so nothing leaks between tests or xdist workers,
and nothing ever touches the real ~/.logic.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

# `.venv/bin/pytest` puts tests/ on sys.path but not the repository, and the
# editable install's finder comes last: tests/store and tests/runtime would
# then shadow the real packages as empty namespace packages.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
from click.testing import CliRunner, Result  # noqa: E402

from store import Settings, Store  # noqa: E402


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
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            rows = {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
            rows["PRAGMA user_version"] = [conn.execute("PRAGMA user_version").fetchone()]
            return rows
        finally:
            conn.close()

    return snapshot
