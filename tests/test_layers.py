"""The layering DESIGN.md promises, read from the source (AST and text, no imports run).

- No SQL statement and no database driver outside `store/` (the backend seam).
- `store` never imports `runtime`.
- The worker side (`runtime/sandbox/`, the worker loop and zygote) imports neither the
  store (but `store.errors`) nor the interfaces.
- Arrows point inward: nothing below the interfaces imports `runtime.http`, `runtime.cli`
  or `runtime.server`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = sorted((ROOT / "runtime").rglob("*.py"))
STORE = sorted((ROOT / "store").rglob("*.py"))
# Statements as this code base writes them (upper-case keywords; `import select` is not SQL).
SQL = re.compile(
    r"\b(SELECT [^\n]*?FROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM"
    r"|CREATE (TABLE|INDEX|TRIGGER)|BEGIN IMMEDIATE|PRAGMA \w+)\b"
)
DRIVERS = {"sqlite3", "sqlite_utils", "psycopg", "psycopg_pool", "psycopg2"}


def imports(path: Path, *, with_type_checking: bool = False) -> set[str]:
    """Absolute module names `path` imports (relative ones resolved), at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    skipped: set[int] = set()
    if not with_type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for child in node.body for n in ast.walk(child))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", RUNTIME, ids=rel)
def test_runtime_speaks_no_sql_and_imports_no_driver(path):
    text = path.read_text(encoding="utf-8")
    assert not SQL.search(text), f"SQL in {rel(path)}: {SQL.search(text).group(0)!r}"
    found = {name.split(".")[0] for name in imports(path, with_type_checking=True)} & DRIVERS
    assert not found, f"{rel(path)} imports {found}"


# Each driver behind its one module of the seam (store/backend.py): repositories speak SQL
# through it, never to a driver.
DRIVER_HOMES = {
    "sqlite3": {"store/database.py", "store/backend.py"},  # backend.py: sqlite3.IntegrityError only
    "sqlite_utils": {"store/database.py", "store/migrations.py"},
    "psycopg": {"store/postgres.py"},
    "psycopg_pool": {"store/postgres.py"},
}


@pytest.mark.parametrize("path", STORE, ids=rel)
def test_each_database_driver_is_imported_by_its_backend_module_only(path):
    found = {name.split(".")[0] for name in imports(path, with_type_checking=True)} & DRIVERS
    strays = {driver for driver in found if rel(path) not in DRIVER_HOMES.get(driver, set())}
    assert not strays, f"{rel(path)} imports {strays}: go through store/backend.py"


@pytest.mark.parametrize("path", STORE, ids=rel)
def test_store_imports_nothing_from_runtime(path):
    assert not {n for n in imports(path, with_type_checking=True) if n.split(".")[0] == "runtime"}


WORKER_SIDE = sorted((ROOT / "runtime" / "sandbox").glob("*.py")) + [
    ROOT / "runtime" / "workers" / name for name in ("worker.py", "zygote.py", "protocol.py", "limits.py")
]


@pytest.mark.parametrize("path", WORKER_SIDE, ids=rel)
def test_the_worker_side_imports_neither_the_store_nor_the_interfaces(path):
    allowed_store = {"store", "store.errors"} | {n for n in imports(path) if n.startswith("store.errors.")}
    outside = {n for n in imports(path) if n.split(".")[0] in ("store", "runtime")}
    bad = {n for n in outside if n.split(".")[0] == "store" and n not in allowed_store}
    bad |= {n for n in outside if n.startswith("runtime.") and not n.startswith(("runtime.sandbox", "runtime.workers"))}
    if path.name == "testing.py":  # the sandbox's test double may read the default settings
        bad -= {"store.settings", "store.settings.Settings"}
    assert not bad, f"{rel(path)} imports {sorted(bad)}"


INTERFACES = ("runtime.http", "runtime.cli", "runtime.server")


HTTP = ROOT / "runtime" / "http"


@pytest.mark.parametrize(
    "path", [p for p in RUNTIME if HTTP not in p.parents and p.name not in ("cli.py", "server.py")], ids=rel
)
def test_arrows_point_inward(path):
    bad = {n for n in imports(path, with_type_checking=True) if n.startswith(INTERFACES)}
    assert not bad, f"{rel(path)} imports the interfaces: {sorted(bad)}"


def test_the_checks_see_what_they_look_for(tmp_path):
    """The scans above find a statement, a driver and a relative import when there is one."""
    probe = ROOT / "runtime" / "_layers_probe.py"
    probe.write_text("import sqlite3\nfrom ..store import errors\nQ = 'SELECT id FROM runs'\n")
    try:
        assert SQL.search(probe.read_text())
        assert "sqlite3" in imports(probe) and "store.errors" in imports(probe)
    finally:
        probe.unlink()
