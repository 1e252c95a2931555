"""Promises 1 and 2 through the real worker pool: a secret a run was handed never
shows up in anything the run leaves behind, and a run reads only what its
manifest declares, of its own owner.

One deployed function `leaky` leaks its three secrets a different way per
mode (event data names the mode). After each run every sink is searched for
the secret values and for every encoding the redactor promises to catch
(runtime/redactor.py): the returned record, the stored record, the raw bytes
of the runs, events and audit tables and of the database file itself, and
the CLI's `functions execute --json`, `functions logs` and `runs show`.
A control run feeds the same encoder a plain value through the event, to
prove that the sandbox really produced exactly the strings searched for.

The matrix runs on both backends, one world (a service with workers) each: on
PostgreSQL the world has a database of its own on pg_server, kept uncompressed
(store_uncompressed), the raw tables are read with psycopg and "the database
file" is that database's files under the cluster's data directory (base/<oid>)
and the WAL the cluster wrote since the database was made (pg_wal).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import os
import re
import sqlite3
import struct
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from runtime.execution.secrets_broker import SecretsBroker
from runtime.manifest import files_from_json
from runtime.sandbox.executor import SecretAccessError
from runtime.service import Service
from store.errors import DeployError
from store.sensitive import MASK
from tests.conftest import BACKENDS
from tests.support import runtime_service

API_KEY = "sk_live_Q7vR2mX9pL4tZ8wK3nB6yH1cJ5dF0gS"
# Spaces for quote_plus, characters that URL, JSON and repr escaping all change, non-ASCII for ensure_ascii.
PASSWORD = "correct horse/battery+staple=\u00f6\"q'x\\z&y:42 end"
MULTI = (
    "-----BEGIN TEST KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n"
    "-----END TEST KEY-----"
)
SECRETS = {"API_KEY": API_KEY, "PASSWORD": PASSWORD, "MULTI": MULTI}
BOB_KEY = "bob-own-key-0d9c8b7a6f5e4d3c2b1a"
ORG_TOKEN = "org-token-a1b2c3d4e5f6a7b8c9d0"
PREFIXES = (b"", b"x", b"xy", b"user:")

# The encoder runs inside the sandbox (no urllib there): it must produce exactly host_forms().
ENCODER = r"""
import base64
import binascii
import json

SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def quote(text, safe="/", plus=False, lower=False):
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if b < 128 and (c in SAFE or c in safe):
            out.append(c)
        elif plus and c == " ":
            out.append("+")
        else:
            h = "%%%02X" % b
            out.append(h.lower() if lower else h)
    return "".join(out)


def forms(value):
    data = value.encode("utf-8")
    out = [value]
    for prefix in (b"", b"x", b"xy", b"user:"):
        out.append(base64.b64encode(prefix + data).decode("ascii"))
        out.append(base64.urlsafe_b64encode(prefix + data).decode("ascii"))
        out.append(base64.b64encode(prefix + data).decode("ascii").rstrip("="))
    out.append(quote(value))
    out.append(quote(value, safe=""))
    out.append(quote(value, safe="", plus=True))
    out.append(quote(value, safe="", plus=True, lower=True))
    out.append(json.dumps(value))
    out.append(json.dumps(value, ensure_ascii=False))
    out.append(json.dumps(json.dumps(value)))
    out.append(repr(value))
    out.append(ascii(value))
    out.append("%a" % (value,))
    out.append(f"{value!a}")
    out.append(repr(data))
    out.append(binascii.hexlify(data).decode("ascii"))
    out.append(data.hex().upper())
    out.append(base64.b85encode(data).decode("ascii"))
    for line in value.splitlines():
        out.append(line)
    return out
"""

LEAKY = (
    ENCODER
    + r"""
import logic


def main(event, secrets):
    mode = event.data
    key, password, multi = secrets.API_KEY, secrets["PASSWORD"], secrets.get("MULTI")
    if mode == "control":
        for form in forms(CONTROL_VALUE):
            print(form)
        return None
    if mode == "print":
        print("key:", key, "password:", password)
        print(multi)
        return "printed"
    if mode == "log":
        logic.log.info("info", key)
        logic.log.warning("warning", password)
        logic.log.error("error", multi)
        return "logged"
    if mode == "return":
        return {"key": key, "list": [password, 1], "nested": {"multi": multi}}
    if mode == "dict_key":
        return {key: 1, "inner": {password: {multi: 2}}}
    if mode == "raise":
        raise ValueError("the key " + key + " was refused")
    if mode == "raise_line":
        raise ValueError(secrets.PASSWORD)
    if mode == "cause":
        try:
            raise KeyError(key)
        except KeyError as exc:
            raise RuntimeError("wrapped " + password) from exc
    if mode == "context":
        try:
            {}[multi]
        except KeyError:
            raise RuntimeError("while handling a lookup")
    if mode == "event_data":
        logic.publish("leak-data", key)
        logic.publish("leak-json", {"password": password, key: [multi]})
        return "published"
    if mode == "event_name":
        logic.publish(key, "as a name")
        logic.publish("pre/" + key, None)
        return "published"
    if mode == "encodings":
        every = forms(key) + forms(password) + forms(multi)
        for form in every:
            print(form)
        logic.publish("encoded-text", " | ".join(every))
        logic.publish("encoded-json", {"forms": forms(key)})
        return every
    if mode == "json_in_json":
        inner = json.dumps({"password": password}, ensure_ascii=False)
        print(json.dumps({"body": inner}))
        return "printed"
    if mode == "cut_log":
        # The log limit (64 KiB) falls in the middle of the key.
        print("x" * (64 * 1024 - 12) + key + " and more")
        print(password)
        return "cut"
    if mode == "cut_message":
        raise ValueError("y" * 1990 + password + " and more")
    if mode == "cut_cause":
        try:
            raise KeyError("z" * 490 + multi.splitlines()[1])
        except KeyError as exc:
            raise RuntimeError("y" * 1995 + key) from exc
    if mode == "multi_lines":
        for line in multi.splitlines():
            logic.log.info(line)
            print("  " + line + "  ")
        return multi.splitlines()
    raise ValueError("unknown mode " + mode)
"""
)

CONTROL = "plain control/value+with=\u00f6\"q'x\\z&y:42 two\nsecond line here"
MODES = [
    "print",
    "log",
    "return",
    "dict_key",
    "raise",
    "raise_line",
    "cause",
    "context",
    "event_data",
    "event_name",
    "encodings",
    "multi_lines",
    "cut_log",
    "cut_message",
    "cut_cause",
]


def host_forms(value: str) -> list[tuple[str, str]]:
    """(what the sandbox encoder writes, the part of it that depends on the value alone)."""
    data = value.encode("utf-8")
    out = [(value, value)]
    for prefix in PREFIXES:
        skip = math.ceil(8 * len(prefix) / 6)  # the first character holding value bits only
        for encoded in (
            base64.b64encode(prefix + data).decode(),
            base64.urlsafe_b64encode(prefix + data).decode(),
            base64.b64encode(prefix + data).decode().rstrip("="),
        ):
            out.append((encoded, encoded[skip:]))
    for quoted in (urllib.parse.quote(value), urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)):
        out.append((quoted, quoted))
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote_plus(value))
    out.append((lower, lower))
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        out.append((text, text[1:-1]))
    twice = json.dumps(json.dumps(value))
    out.append((twice, twice[3:-3]))
    out.append((repr(value), repr(value)[1:-1]))
    for _ in range(3):  # ascii(), "%a" and f"{!a}" write the same text
        out.append((ascii(value), ascii(value)[1:-1]))
    out.append((repr(data), repr(data)[2:-1]))
    out.append((data.hex(), data.hex()))
    out.append((data.hex().upper(), data.hex().upper()))
    out.append((base64.b85encode(data).decode(), base64.b85encode(data).decode()))
    out += [(line, line) for line in value.splitlines()]
    return out


def forbidden() -> set[str]:
    # The first characters of each value and line: what a text cut at a limit would leave.
    found = {piece.strip()[:8] for value in SECRETS.values() for piece in [value, *value.splitlines()]}
    for value in SECRETS.values():
        for _full, core in host_forms(value):
            core = core.strip()
            if len(core) >= 4:
                found.add(core)
    return found


FORBIDDEN = sorted(forbidden(), key=len)


def assert_clean(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        for form in FORBIDDEN:
            assert form.encode("utf-8") not in text, f"a secret form leaked into {where}"
        return
    for form in FORBIDDEN:
        assert form not in text, f"a secret form leaked into {where}: ...{form[:6]}..."


# fixtures ----------------------------------------------------------------------------

_databases = itertools.count()
WAL_START: dict[str, int] = {}  # a PostgreSQL world's database URL -> the WAL's end when it was made


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The whole matrix runs on SQLite and on PostgreSQL (tests/conftest.py), one world each."""
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None on SQLite; on PostgreSQL a database of this module's own on pg_server (as
    conftest's pg_database, but for the module), dropped after it. Only the PostgreSQL
    case asks for pg_server, so the SQLite case needs no PostgreSQL."""
    if backend != "postgresql":
        yield None
        return
    server: str = request.getfixturevalue("pg_server")
    name = f"logic_leaks_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        (start,) = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone() or ("",)
    base, _, _ = server.rpartition("/")
    url = f"{base}/{name}"
    WAL_START[url] = lsn(start)
    try:
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_uncompressed(url: str) -> None:
    """PostgreSQL compresses a value of more than about 2 KB (pglz, in its TOAST): a secret in
    a run record would be at rest but not in the raw bytes searched. So this database keeps
    every text column uncompressed (EXTERNAL: out of line, in chunks of about 2 KB, as SQLite
    keeps a long value in overflow pages of 4 KB); the store's SQL does not change."""
    with psycopg.connect(url, autocommit=True) as pg:
        columns = pg.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN ('text', 'bytea', 'jsonb', 'character varying')"
        ).fetchall()
        assert ("runs", "record") in columns
        for table, column in columns:
            pg.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET STORAGE EXTERNAL')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, backend: str, database_url: str | None):
    """One service with workers; alice (member of acme) owns the three secrets and `leaky`."""
    service = runtime_service(
        tmp_path_factory, f"leaks-{backend}", workers=2, run_timeout_s=10.0, database_url=database_url
    )
    try:
        if database_url is not None:
            store_uncompressed(database_url)
        admin = service.actor()
        alice = service.create_user(admin, "alice")
        bob = service.create_user(admin, "bob")
        service.create_org(alice, "acme")
        for name, value in SECRETS.items():
            service.create_secret(alice, name, value)
        service.create_secret(alice, "ORG_TOKEN", ORG_TOKEN, org="acme")
        source = f"CONTROL_VALUE = {json.dumps(CONTROL)}\n" + LEAKY
        service.deploy_function(
            alice,
            files_from_json(
                {
                    "name": "leaky",
                    "secrets": ["API_KEY", "PASSWORD", "MULTI"],
                    "triggers": [{"type": "event", "event_name": "leak"}],
                    "source": source,
                }
            ),
        )
        yield service, alice, bob
    finally:
        service.close()


def postgresql_url(service: Service) -> str | None:
    """The service's PostgreSQL database, or None on SQLite."""
    url = service.settings.database_url
    return None if url is None else url.get_secret_value()


def cli(service: Service, *args: str) -> str:
    from runtime.cli import cli as command

    url = postgresql_url(service)
    env = None if url is None else {"LOGIC_DATABASE_URL": url}  # else the CLI opens a SQLite file in the home
    result = CliRunner().invoke(command, ["--home", str(service.settings.home), "--as", "alice", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout + result.stderr


def raw_table(service: Service, table: str) -> str:
    """Every row of `table` as stored, read beside the store (sqlite3 or psycopg)."""
    url = postgresql_url(service)
    if url is None:
        conn = sqlite3.connect(service.settings.db_path)
        try:
            return repr(conn.execute(f"SELECT * FROM {table}").fetchall())
        finally:
            conn.close()
    with psycopg.connect(url) as pg:
        rows = pg.execute(f"SELECT * FROM {table}").fetchall()
    # bytea as bytes (not a memoryview's repr), so its encodings are searchable as on SQLite.
    return repr([tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows])


def raw_database(service: Service) -> bytes:
    """The bytes of the database at rest: SQLite's logic.db* files; on PostgreSQL the WAL the
    cluster wrote since this module's database was made, then (after a CHECKPOINT) that
    database's files under the data directory, base/<oid> (tests/security/test_redteam_postgres.py's
    _data_files, for one database and its stretch of the WAL)."""
    url = postgresql_url(service)
    if url is None:
        home = service.settings.home
        return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.name.startswith("logic.db"))
    try:
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute("SET synchronous_commit = on")
            pg.execute("SELECT pg_current_xact_id()")  # a commit that waits for the WAL before it to reach disk
            (end,) = pg.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone() or ("",)
            (data_directory,) = pg.execute("SHOW data_directory").fetchone() or ("",)
            (page_size,) = pg.execute("SHOW wal_block_size").fetchone() or ("",)
            (oid,) = pg.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone() or (0,)
            data = Path(data_directory)
            readable(data / "pg_wal")
            wal = wal_between(data / "pg_wal", WAL_START[url], lsn(end), int(page_size))
            pg.execute("CHECKPOINT")  # the database's pages reach its files
    except psycopg.errors.InsufficientPrivilege as refused:
        pytest.fail(f"the raw database sink needs a PostgreSQL superuser (CHECKPOINT, SHOW data_directory): {refused}")
    files = data / "base" / str(oid)
    readable(files)
    return wal + b"".join(path.read_bytes() for path in sorted(files.rglob("*")) if path.is_file())


def readable(folder: Path) -> None:
    if not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
        pytest.fail(
            f"the PostgreSQL data directory's {folder} cannot be read here (a server on another machine, or "
            "another user's files): the raw database sink needs the server's files; run the tests as a user "
            "that can read them, or without LOGIC_TEST_POSTGRES_URL (each xdist worker's throwaway cluster)"
        )


def lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def wal_between(pg_wal: Path, start: int, end: int, page_size: int) -> bytes:
    """The WAL pages from LSN `start` to `end`, in order, their headers dropped (a record that
    runs on into the next page reads on). The WAL is the whole cluster's, and pg_server's holds
    every earlier test module's: only this module's stretch is searched. Each page's header
    says where it belongs (xlp_pageaddr), so a segment recycled under a later name still
    counts; a page that is gone fails the test rather than go unsearched."""
    first, last = start - start % page_size, (end - 1) - (end - 1) % page_size
    pages: dict[int, bytes] = {}
    for path in pg_wal.iterdir():
        if len(path.name) != 24 or not path.is_file():  # segments only (not archive_status, *.history)
            continue
        try:
            segment = path.read_bytes()
        except FileNotFoundError:  # recycled or removed while this reads
            continue
        for at in range(0, len(segment), page_size):
            info, address = struct.unpack_from("=2xH4xQ", segment, at)  # XLogPageHeaderData
            if first <= address <= last and address % len(segment) == at:
                header = 40 if info & 0x0002 else 24  # XLP_LONG_HEADER: a segment's first page
                pages[address] = segment[at + header : at + page_size]
    missing = [hex(a) for a in range(first, last + 1, page_size) if a not in pages]
    assert not missing, f"{len(missing)} WAL pages of this module are not in {pg_wal} (first {missing[0]})"
    return b"".join(pages[address] for address in sorted(pages))


# the sandbox writes exactly the strings the test looks for -----------------------------


def test_control_run_produces_the_searched_forms(world):
    service, alice, _ = world
    record = service.execute_function(alice, "leaky", event_name="leak", data="control")
    assert record["status"] == "success", record["error"]
    assert [line["message"] for line in record["logs"]] == [full for full, _ in host_forms(CONTROL)]


# every leak, every sink -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_no_sink_shows_a_secret(world, mode):
    service, alice, _ = world
    record = service.execute_function(alice, "leaky", event_name="leak", data=mode)
    text = json.dumps(record, ensure_ascii=False)
    assert MASK in text, f"mode {mode} leaked nothing: the test proves nothing"  # the leak happened...
    assert_clean(text, "the returned run record")  # ...and was masked
    assert_clean(json.dumps(record), "the returned run record (ASCII JSON)")
    assert record["secrets_accessed"] == ["API_KEY", "PASSWORD", "MULTI"]

    stored = service.get_run(alice, record["id"])
    assert stored == record
    assert_clean(json.dumps(service.function_runs(alice, "leaky", limit=5)), "function_runs")
    assert_clean(raw_table(service, "runs"), "the runs table")
    assert_clean(raw_table(service, "events"), "the events table")
    assert_clean(raw_table(service, "secret_access"), "the audit rows")
    assert_clean(json.dumps([a.__dict__ for a in service.audit(alice)]), "service.audit")

    assert_clean(
        cli(service, "functions", "execute", "leaky", "--event", "leak", "--data", mode, "--json"),
        "functions execute --json",
    )
    assert_clean(cli(service, "functions", "execute", "leaky", "--event", "leak", "--data", mode), "functions execute")
    assert_clean(cli(service, "functions", "logs", "leaky", "--limit", "3"), "functions logs")
    assert_clean(cli(service, "functions", "logs", "leaky", "--limit", "3", "--json"), "functions logs --json")
    assert_clean(cli(service, "runs", "show", record["id"]), "runs show")
    assert_clean(cli(service, "audit", "--json"), "logic audit --json")
    assert_clean(raw_database(service), "the database file")


def test_the_shapes_of_masked_output(world):
    """Where the secret was, the mask is, and the rest of the text is kept."""
    service, alice, _ = world
    run = lambda mode: service.execute_function(alice, "leaky", event_name="leak", data=mode)  # noqa: E731
    printed = run("print")
    assert printed["logs"][0]["message"] == f"key: {MASK} password: {MASK}"
    assert printed["logs"][1]["message"] == MASK
    assert run("return")["result"] == {"key": MASK, "list": [MASK, 1], "nested": {"multi": MASK}}
    assert run("dict_key")["result"] == {MASK: 1, "inner": {MASK: {MASK: 2}}}

    raised = run("raise_line")
    assert raised["status"] == "error"
    assert raised["error"]["type"] == "ValueError" and raised["error"]["message"] == MASK
    tb = raised["error"]["traceback"]
    assert "raise ValueError(secrets.PASSWORD)" in tb and tb.rstrip().endswith(f"ValueError: {MASK}")
    assert "runtime/" not in tb and "site-packages" not in tb  # the author's lines only

    cause = run("cause")["error"]
    assert "The above exception was the direct cause" in cause["traceback"]
    assert f"KeyError: {MASK}" in cause["traceback"] or f"KeyError: '{MASK}'" in cause["traceback"]
    context = run("context")["error"]
    assert "During handling of the above exception" in context["traceback"]

    events = run("event_data")["events_published"]
    assert events[0] == {"name": "leak-data", "data": MASK}
    assert json.loads(events[1]["data"]) == {"password": MASK, MASK: [MASK]}
    names = run("event_name")["events_published"]
    assert [e["name"] for e in names] == [MASK, f"pre/{MASK}"]


def test_encoded_forms_each_become_one_mask(world):
    service, alice, _ = world
    record = service.execute_function(alice, "leaky", event_name="leak", data="encodings")
    assert record["status"] == "success"
    messages = [line["message"] for line in record["logs"]]
    expected = [full for value in (API_KEY, PASSWORD, MULTI) for full, _ in host_forms(value)]
    assert len(messages) == len(expected)
    for message in messages:
        # One mask per form (overlapping matches merge); what stays visible is only the
        # quoting around it and, for base64 after a prefix, the prefix and one mixed character.
        assert message.count(MASK) == 1, message
        assert len(message.replace(MASK, "")) <= 8, message


def test_json_text_of_a_non_ascii_secret_inside_json(world):
    service, alice, _ = world
    record = service.execute_function(alice, "leaky", event_name="leak", data="json_in_json")
    assert record["status"] == "success"
    assert_clean(json.dumps(record), "the returned run record")


# promise 2: declared secrets of the function's own owner only ----------------------------


def test_a_user_cannot_declare_another_users_secret(world):
    service, _alice, bob = world
    files = files_from_json(
        {"name": "steal", "secrets": ["API_KEY"], "source": "def main(secrets):\n    return secrets.API_KEY\n"}
    )
    with pytest.raises(DeployError) as refused:
        service.deploy_function(bob, files)
    assert "secret API_KEY does not exist in bob's sandbox" in refused.value.message
    with pytest.raises(DeployError):  # a test run is checked the same way
        service.execute_function(bob, files)
    assert service.list_functions(bob) == []

    # With a secret of the same name of his own, bob reads his value, never alice's.
    service.create_secret(bob, "API_KEY", BOB_KEY)
    hashed = files_from_json(
        {
            "name": "steal",
            "secrets": ["API_KEY"],
            "source": (
                "import hashlib\ndef main(secrets):\n    return hashlib.sha256(secrets.API_KEY.encode()).hexdigest()\n"
            ),
        }
    )
    service.deploy_function(bob, hashed)
    record = service.execute_function(bob, "steal")
    assert record["result"] == hashlib.sha256(BOB_KEY.encode()).hexdigest()
    assert service.execute_function(bob, hashed)["result"] == record["result"]  # test run too


def test_an_org_function_sees_only_org_secrets(world):
    service, alice, bob = world
    source = (
        "import hashlib\ndef main(secrets):\n"
        "    return [hashlib.sha256(secrets[n].encode()).hexdigest() for n in secrets]\n"
    )
    with pytest.raises(DeployError, match="secret API_KEY does not exist in organization acme"):
        service.deploy_function(
            alice, files_from_json({"name": "org-fn", "secrets": ["API_KEY"], "source": source}), org="acme"
        )
    fn = service.deploy_function(
        alice, files_from_json({"name": "org-fn", "secrets": ["ORG_TOKEN"], "source": source}), org="acme"
    )
    assert fn.owner == "org:acme"
    record = service.execute_function(alice, "org-fn", org="acme")
    assert record["result"] == [hashlib.sha256(ORG_TOKEN.encode()).hexdigest()]
    # A user function of a member does not see the org's secret either.
    with pytest.raises(DeployError, match="secret ORG_TOKEN does not exist in alice's sandbox"):
        service.deploy_function(alice, files_from_json({"name": "no-org", "secrets": ["ORG_TOKEN"], "source": source}))
    # Bob, not a member, cannot run it or read its runs.
    from store.errors import NotFound, PermissionDenied

    with pytest.raises(PermissionDenied):
        service.execute_function(bob, "org-fn", org="acme")
    with pytest.raises(NotFound):
        service.get_run(bob, record["id"])


def test_an_undeclared_name_is_a_clear_run_error(world):
    service, alice, _ = world
    # The name is computed at run time, so the deploy check cannot see it.
    source = "def main(secrets):\n    name = 'PASS' + 'WORD'\n    return secrets[name]\n"
    service.deploy_function(
        alice, files_from_json({"name": "undeclared", "secrets": ["API_KEY", "MULTI"], "source": source})
    )
    record = service.execute_function(alice, "undeclared")
    assert record["status"] == "error"
    assert record["error"]["message"] == (
        "secret 'PASSWORD' is not declared in this function's manifest; declared: API_KEY, MULTI"
    )
    assert record["secrets_accessed"] == []
    assert record["result"] is None


def test_the_broker_refuses_what_the_worker_asks_for(world):
    """A compromised worker can ask the parent for any name: the broker is the real check."""
    service, _alice, _ = world
    broker = SecretsBroker(
        service.store.secrets,
        owner="user:alice",
        declared=("API_KEY",),
        consumer_kind="logic_function",
        consumer_id="fn",
        consumer_name="fn",
        run_id="r1",
    )
    with pytest.raises(SecretAccessError, match="'PASSWORD' is not declared .*; declared: API_KEY"):
        broker.read("PASSWORD")
    for odd in ("", "api_key", "API_KEY ", "../API_KEY"):
        with pytest.raises(SecretAccessError):
            broker.read(odd)
    assert broker.accesses == [] and broker.plain_values() == []
    # Declared but of another owner: bob's broker for API_KEY reads bob's value or nothing.
    other = SecretsBroker(
        service.store.secrets,
        owner="user:nobody",
        declared=("API_KEY",),
        consumer_kind="logic_function",
        consumer_id="fn",
        consumer_name="fn",
        run_id="r2",
    )
    with pytest.raises(SecretAccessError, match="no longer exists"):
        other.read("API_KEY")
    assert other.accesses == []
    assert broker.read("API_KEY") == API_KEY
    assert broker.names_read == ["API_KEY"] and len(broker.accesses) == 1


def test_a_run_sees_an_update_at_once_and_every_read_is_audited(world, monkeypatch):
    service, alice, _ = world
    service.create_secret(alice, "ROTATING", "rotating-value-one-7f3a9c")
    source = (
        "import hashlib\n"
        "def main(secrets):\n"
        "    first = secrets.ROTATING\n"
        "    second = secrets.ROTATING\n"
        "    print(first, second)\n"
        "    return [hashlib.sha256(v.encode()).hexdigest() for v in (first, second)]\n"
    )
    service.deploy_function(alice, files_from_json({"name": "rotating", "secrets": ["ROTATING"], "source": source}))
    assert service.get_secret(alice, "ROTATING").last_accessed_at is None
    digest = lambda v: hashlib.sha256(v.encode()).hexdigest()  # noqa: E731

    # The value is updated between the two reads of one run: the second read sees it.
    import runtime.execution.engine

    class Rotating(SecretsBroker):
        def read(self, name):
            value = super().read(name)
            if len(self.accesses) == 1:
                service.update_secret(alice, "ROTATING", "rotating-value-two-8e4b0d")
            return value

    monkeypatch.setattr(runtime.execution.engine, "SecretsBroker", Rotating)
    record = service.execute_function(alice, "rotating")
    monkeypatch.undo()
    assert record["result"] == [digest("rotating-value-one-7f3a9c"), digest("rotating-value-two-8e4b0d")]
    assert record["logs"][0]["message"] == f"{MASK} {MASK}"  # both values are masked
    trail = [a for a in service.audit(alice, "ROTATING")]
    assert [a.run_id for a in trail] == [record["id"], record["id"]]
    assert {(a.consumer_kind, a.consumer_name) for a in trail} == {("logic_function", "rotating")}
    first_access = service.get_secret(alice, "ROTATING").last_accessed_at
    assert first_access == max(a.at for a in trail)

    # The next run sees the value of a later update, and moves last_accessed_at.
    service.update_secret(alice, "ROTATING", "rotating-value-three-9f5c1e")
    time.sleep(0.002)
    again = service.execute_function(alice, "rotating")
    assert again["result"] == [digest("rotating-value-three-9f5c1e")] * 2
    assert service.get_secret(alice, "ROTATING").last_accessed_at > first_access
    assert [a.run_id for a in service.audit(alice, "ROTATING")][:2] == [again["id"], again["id"]]
    assert_clean(raw_table(service, "secret_access"), "the audit rows")
    rows = raw_table(service, "secret_access") + raw_table(service, "runs")
    for value in ("rotating-value-one-7f3a9c", "rotating-value-two-8e4b0d", "rotating-value-three-9f5c1e"):
        assert value not in rows
