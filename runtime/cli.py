"""`logic`: the command line. Thin: each command calls one service method.

Errors print one line `Error: ...` on stderr and exit 1; usage errors exit 2.
`--json` on listings and details prints machine-readable output.
Secret values are never taken from the command line (it lands in shell
history and `ps`): they come from piped stdin, a hidden prompt, or a file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from runtime import paging
from runtime.secrets_import import FORMATS
from runtime.service import Service, no_runs
from store.errors import Conflict, InvalidInput, LogicError, TooLarge
from store.settings import Settings


class CliError(click.ClickException):
    """A LogicError as click shows it: `Error: message`, exit code from the error."""

    def __init__(self, error: LogicError):
        # A deploy refused for several problems lists them one per line, so each can be read.
        problems = getattr(error, "problems", None) or []
        if len(problems) > 1:
            super().__init__(f"deploy refused ({len(problems)} problems):\n  " + "\n  ".join(problems))
        else:
            super().__init__(error.message)
        self.exit_code = error.exit_code  # type: ignore[misc]  # a ClassVar in click, which reads it off the instance


def refuse_undecodable(ctx: click.Context) -> None:
    """Text arguments with bytes that are not UTF-8 arrive as lone surrogates (Python's
    surrogateescape), which no database can store or look up: a driver's traceback, before
    this. Paths may hold any bytes, so only text parameters are checked."""
    for name, value in ctx.params.items():
        values = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(v, str) and any("\ud800" <= ch <= "\udfff" for ch in v) for v in values):
            option = name.replace("_", "-")
            raise click.UsageError(f"{option} is not valid UTF-8 text: check the encoding of the terminal or script")


class AppCommand(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        refuse_undecodable(ctx)
        return super().invoke(ctx)


class AppGroup(click.Group):
    """Turns every LogicError raised by a command into one `Error:` line."""

    command_class = AppCommand
    group_class = type  # subgroups are AppGroups too

    def invoke(self, ctx: click.Context) -> Any:
        refuse_undecodable(ctx)
        try:
            return super().invoke(ctx)
        except LogicError as exc:
            raise CliError(exc) from None


class App:
    """What travels in ctx.obj: settings, and the service opened on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            self._service = Service.open(self.settings)
        return self._service

    def runtime(self) -> Service:
        """The service with workers: the zygote starts before the store opens."""
        if self._service is None or self._service.pool is None:
            self.close()
            self._service = Service.open(self.settings, runtime=True)
        return self._service

    @property
    def actor(self):
        return self.service.actor(self.settings.user)

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


pass_app = click.make_pass_decorator(App)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        human()


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    t = Table(*columns, title=title, show_lines=False)
    for row in rows:
        t.add_row(*["-" if v is None else str(v) for v in row])
    # Piped output gets room for whole ids and times; a terminal keeps its own width.
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160).print(t)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def org_option(f):
    return click.option(
        "--org", default=None, metavar="ORG", help="Act on this organization's secrets instead of your sandbox."
    )(f)


def cursor_option(f):
    return click.option("--cursor", default=None, metavar="CURSOR", help="Start after the page before (its hint).")(f)


def more_pages(cursor: str | None) -> None:
    """On stderr (so --json output stays one document): how to get the next page."""
    if cursor is not None:
        click.echo(f"More: repeat with --cursor {cursor}", err=True)


def url_option(f):
    return click.option(
        "--url", default=None, metavar="URL", help="The server to follow (default: http://LOGIC_HOST:LOGIC_PORT)."
    )(f)


@click.group(cls=AppGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="logic-runtime", prog_name="logic", message="%(prog)s %(version)s")
@click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="Data directory (default: $LOGIC_HOME or ~/.logic)."
)
@click.option(
    "--as",
    "as_user",
    default=None,
    metavar="USER",
    help="Act as this user (default: $LOGIC_USER or the admin made by `logic init`).",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None, as_user: str | None) -> None:
    """logic-runtime: Logic functions with encrypted cloud secrets, self-hosted."""
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = home
    if as_user is not None:
        overrides["user"] = as_user
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # one line per bad variable, never its value (Settings hides it)
        problems = "; ".join(
            f"LOGIC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise click.UsageError(f"invalid settings: {problems}") from None
    app = App(settings)
    ctx.obj = app
    ctx.call_on_close(app.close)


# init --------------------------------------------------------------------------


@cli.command()
@json_option
@click.pass_obj
def init(app: App, as_json: bool) -> None:
    """Create the data directory, master key (mode 0600), database, admin user and API token."""
    result = Service.initialize(app.settings)
    data = {
        "created": result.created,
        "home": str(app.settings.home),
        "database": str(app.settings.database_shown),
        "master_key": result.key_source,
        "admin": result.admin.name,
        "token": result.token,
    }

    def human() -> None:
        if not result.created:
            click.echo(f"Already initialized: {app.settings.home} (admin user {result.admin.name}).")
            return
        click.echo(f"Initialized {app.settings.home}")
        click.echo(f"  database:   {app.settings.database_shown}")
        click.echo(f"  master key: {result.key_source}")
        click.echo(f"  admin user: {result.admin.name}")
        click.echo(f"  API token:  {result.token}")
        click.echo("The token is shown only this once: store it now (e.g. export LOGIC_TOKEN=...).")

    emit(data, as_json, human)


# secrets -----------------------------------------------------------------------


def read_secret_value(value_file: Path | None, max_bytes: int, *, secret: bool = True) -> bytes | str:
    """The value from --value-file, piped stdin, or a hidden prompt; never from argv.

    One trailing newline is dropped (what `echo` and editors add). Reads at
    most a little over the limit, so a huge pipe is refused, not buffered.
    """
    cap = max_bytes + 3  # room for the newline we drop, and one byte to notice "too long"
    if value_file is not None:
        try:
            with value_file.open("rb") as fh:
                raw = fh.read(cap)
        except OSError as exc:
            raise InvalidInput(f"cannot read {value_file}: {exc.strerror}") from None
    elif not sys.stdin.isatty():
        stream = getattr(sys.stdin, "buffer", None)
        raw = stream.read(cap) if stream is not None else sys.stdin.read(cap).encode()
    else:
        # A secret is typed hidden, twice; an environment variable (shown anyway) once, visibly.
        prompt = "Secret value" if secret else "Value"
        raw = click.prompt(prompt, hide_input=secret, confirmation_prompt=secret).encode("utf-8")
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw


def when(stamp: str | None) -> str | None:
    """An ISO time as people read it in a table: to the second, no T, no Z."""
    return stamp[:19].replace("T", " ") if stamp else None


def secret_rows(infos) -> list[list[Any]]:
    return [
        [
            i.name,
            when(i.created_at),
            when(i.updated_at),
            when(i.last_accessed_at),
            i.usage_count,
            ", ".join(i.logic_functions + i.integrations) or None,
        ]
        for i in infos
    ]


SECRET_COLUMNS = ["name", "created", "updated", "last accessed", "uses", "used by"]


@cli.group()
def secrets() -> None:
    """Create, inspect and delete secrets (values are write-only)."""


@secrets.command("list")
@click.option("--names", "names_only", is_flag=True, help="Only the names, one per line (for scripts).")
@org_option
@json_option
@pass_app
def secrets_list(app: App, names_only: bool, org: str | None, as_json: bool) -> None:
    """List secrets: names, times and usage, never values."""
    infos = app.service.list_secrets(app.actor, org)
    if names_only:
        for info in infos:
            click.echo(info.name)
        return
    emit(
        [i.to_json() for i in infos],
        as_json,
        lambda: table(SECRET_COLUMNS, secret_rows(infos)) if infos else click.echo("No secrets."),
    )


@secrets.command("get")
@click.argument("name")
@org_option
@json_option
@pass_app
def secrets_get(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Show one secret's details (never its value)."""
    info = app.service.get_secret(app.actor, name, org)

    def human() -> None:
        data = info.to_json()
        for key in ("name", "created_at", "updated_at", "last_accessed_at", "usage_count"):
            click.echo(f"{key + ':':18} {data[key] if data[key] is not None else 'never'}")
        click.echo(f"{'logic_functions:':18} {', '.join(info.logic_functions) or '-'}")
        click.echo(f"{'integrations:':18} {', '.join(info.integrations) or '-'}")

    emit(info.to_json(), as_json, human)


@secrets.command("create")
@click.argument("name")
@click.option(
    "--value-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the value from this file instead of stdin or the prompt.",
)
@org_option
@json_option
@pass_app
def secrets_create(app: App, name: str, value_file: Path | None, org: str | None, as_json: bool) -> None:
    """Create a secret; the value comes from stdin, a hidden prompt, or --value-file."""
    service, actor = app.service, app.actor
    service.check_secret_name(name)  # before asking for a value
    if service.secret_exists(actor, name, org):
        raise Conflict(f"secret {name} already exists")
    info = service.create_secret(actor, name, read_secret_value(value_file, app.settings.secret_value_max_bytes), org)
    emit(info.to_json(), as_json, lambda: click.echo(f"Created secret {info.name}."))


@secrets.command("update")
@click.argument("name")
@click.option(
    "--value-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the value from this file instead of stdin or the prompt.",
)
@org_option
@json_option
@pass_app
def secrets_update(app: App, name: str, value_file: Path | None, org: str | None, as_json: bool) -> None:
    """Replace a secret's value; the old one is kept as a version (never shown)."""
    service, actor = app.service, app.actor
    service.get_secret(actor, name, org)  # say "does not exist" before asking for a value
    info = service.update_secret(actor, name, read_secret_value(value_file, app.settings.secret_value_max_bytes), org)
    emit(info.to_json(), as_json, lambda: click.echo(f"Updated secret {info.name}."))


@secrets.command("delete")
@click.argument("name")
@org_option
@json_option
@pass_app
def secrets_delete(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Delete a secret that no function or integration uses."""
    app.service.delete_secret(app.actor, name, org)
    emit({"deleted": name}, as_json, lambda: click.echo(f"Deleted secret {name}."))


# secret versions and bulk import (issue 13) ------------------------------------------


VERSION_COLUMNS = ["version", "created", "by", "current", "restored from"]


@secrets.command("versions")
@click.argument("name")
@org_option
@json_option
@pass_app
def secrets_versions(app: App, name: str, org: str | None, as_json: bool) -> None:
    """List a secret's versions: number, when, by whom, which is current; never a value."""
    versions = app.service.secret_versions(app.actor, name, org)
    rows = [[v.number, when(v.created_at), v.created_by, "yes" if v.current else "", v.restored_from] for v in versions]
    emit([v.to_json() for v in versions], as_json, lambda: table(VERSION_COLUMNS, rows))


@secrets.command("restore")
@click.argument("name")
@click.option("--version", "version", type=int, required=True, metavar="N", help="The kept version to make current.")
@org_option
@json_option
@pass_app
def secrets_restore(app: App, name: str, version: int, org: str | None, as_json: bool) -> None:
    """Make a kept version current again, as a new version; the value is never shown."""
    info = app.service.restore_secret(app.actor, name, version, org)
    emit(
        {**info.to_json(), "version": info.version, "restored_from": version},
        as_json,
        lambda: click.echo(f"Restored secret {name}: version {version} is current again, as version {info.version}."),
    )


def read_import(path: Path, max_bytes: int) -> bytes:
    """An import file's bytes, or stdin's for `-`; at most one byte past the limit, so a huge
    input is refused, not buffered."""
    if str(path) == "-":
        if sys.stdin.isatty():  # values typed into a terminal are shown as they are typed
            raise InvalidInput("- reads the import from a pipe, e.g. `logic secrets import - < .env`")
        stream = getattr(sys.stdin, "buffer", None)
        return stream.read(max_bytes + 1) if stream is not None else sys.stdin.read(max_bytes + 1).encode()
    try:
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


@secrets.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--update", is_flag=True, help="Replace existing secrets' values (each keeps the old one as a version).")
@click.option(
    "--format",
    "import_format",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="dotenv (NAME=value lines) or json (one object); auto: by the file's suffix, else its first character.",
)
@org_option
@json_option
@pass_app
def secrets_import(app: App, file: Path, update: bool, import_format: str, org: str | None, as_json: bool) -> None:
    """Import secrets from a .env or JSON file (or - for stdin): all or nothing; prints names only."""
    if import_format == "auto" and file.suffix.lower() == ".json":
        import_format = "json"
    elif import_format == "auto" and (file.suffix.lower() == ".env" or file.name.startswith(".env")):
        import_format = "dotenv"
    content = read_import(file, app.settings.secret_import_max_bytes)
    result = app.service.import_secrets(app.actor, content, format=import_format, update=update, org=org)

    def human() -> None:
        if result.created:
            click.echo(f"Created {len(result.created)}: {', '.join(result.created)}")
        if result.updated:
            click.echo(f"Updated {len(result.updated)}: {', '.join(result.updated)}")

    emit(result.to_json(), as_json, human)


# environment variables -------------------------------------------------------------


@cli.group()
def env() -> None:
    """Environment variables: plain-text configuration functions and integrations read."""


@env.command("list")
@org_option
@json_option
@pass_app
def env_list(app: App, org: str | None, as_json: bool) -> None:
    """List environment variables with their values."""
    found = app.service.list_env(app.actor, org)
    emit(
        [v.to_json() for v in found],
        as_json,
        lambda: (
            table(["name", "value", "updated"], [[v.name, v.value, when(v.updated_at)] for v in found])
            if found
            else click.echo("No environment variables.")
        ),
    )


@env.command("get")
@click.argument("name")
@org_option
@json_option
@pass_app
def env_get(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Print one variable's value."""
    var = app.service.get_env(app.actor, name, org)
    emit(var.to_json(), as_json, lambda: click.echo(var.value))


@env.command("set")
@click.argument("name")
@click.argument("value", required=False)
@click.option(
    "--value-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the value from this file (else the argument, else stdin).",
)
@org_option
@json_option
@pass_app
def env_set(app: App, name: str, value: str | None, value_file: Path | None, org: str | None, as_json: bool) -> None:
    """Create or replace a variable; VALUE, --value-file or stdin (not secret: an argument is fine)."""
    service = app.service
    service.store.environment.check_name(name)  # before reading stdin
    if value is not None and value_file is not None:
        raise InvalidInput("give the value or --value-file, not both")
    if value is None:
        raw = read_secret_value(value_file, app.settings.env_bytes_max, secret=False)
        try:
            value = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise InvalidInput("environment variable value is not valid UTF-8 text") from None
    var = service.set_env(app.actor, name, value, org)
    emit(var.to_json(), as_json, lambda: click.echo(f"Set {var.name}."))


@env.command("delete")
@click.argument("name")
@org_option
@json_option
@pass_app
def env_delete(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Delete a variable; runs that start from now on no longer see it."""
    app.service.delete_env(app.actor, name, org)
    emit({"deleted": name}, as_json, lambda: click.echo(f"Deleted {name}."))


# ledgers -----------------------------------------------------------------------------


@cli.group()
def ledgers() -> None:
    """Ledgers: JSON state that functions keep between runs."""


def _ledger_json(path: Path | None, max_bytes: int) -> Any:
    """JSON from --file or stdin, read up to a little over the limit."""
    cap = 4 * max_bytes + 1024  # whitespace and escapes: the store checks the compact size
    try:
        if path is not None:
            with path.open("rb") as fh:
                raw = fh.read(cap + 1)
        else:
            raw = sys.stdin.buffer.read(cap + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > cap:
        raise TooLarge(f"ledger data is over {max_bytes} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidInput("ledger data is not valid JSON") from None


@ledgers.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the ledger holds.")
@org_option
@json_option
@pass_app
def ledgers_create(app: App, name: str, description: str, org: str | None, as_json: bool) -> None:
    """Create an empty ledger."""
    record = app.service.create_ledger(app.actor, name, description, org)
    emit(record.to_json(), as_json, lambda: click.echo(f"Created ledger {record.name}."))


@ledgers.command("list")
@org_option
@json_option
@pass_app
def ledgers_list(app: App, org: str | None, as_json: bool) -> None:
    """List ledgers: name, size, last update."""
    found = app.service.list_ledgers(app.actor, org)
    emit(
        [r.to_json() for r in found],
        as_json,
        lambda: (
            table(
                ["name", "description", "bytes", "updated"],
                [[r.name, r.description or None, r.size_bytes, when(r.updated_at)] for r in found],
            )
            if found
            else click.echo("No ledgers.")
        ),
    )


@ledgers.command("get")
@click.argument("name")
@org_option
@json_option
@pass_app
def ledgers_get(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Print a ledger's data (JSON)."""
    record = app.service.get_ledger(app.actor, name, org)
    emit(record.to_json(), as_json, lambda: click.echo(json.dumps(record.data, indent=2)))


@ledgers.command("set")
@click.argument("name")
@click.option(
    "--file", "path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Read the JSON here."
)
@click.option("--merge", is_flag=True, help="Replace only the top-level keys given.")
@org_option
@json_option
@pass_app
def ledgers_set(app: App, name: str, path: Path | None, merge: bool, org: str | None, as_json: bool) -> None:
    """Set a ledger's data from stdin or --file (a JSON object); the old data becomes a version."""
    data = _ledger_json(path, app.settings.ledger_max_bytes)
    record = app.service.write_ledger(app.actor, name, "merge" if merge else "replace", data, org)
    emit(record.to_json(), as_json, lambda: click.echo(f"Set ledger {name} ({record.size_bytes} bytes)."))


@ledgers.command("delete")
@click.argument("name")
@org_option
@json_option
@pass_app
def ledgers_delete(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Empty a ledger's data (kept as a version); the ledger stays."""
    record = app.service.write_ledger(app.actor, name, "delete", None, org)
    emit(record.to_json(), as_json, lambda: click.echo(f"Emptied ledger {name}."))


@ledgers.command("versions")
@click.argument("name")
@org_option
@json_option
@pass_app
def ledgers_versions(app: App, name: str, org: str | None, as_json: bool) -> None:
    """The replaced data's versions, newest first."""
    found = app.service.ledger_versions(app.actor, name, org)
    emit(
        found,
        as_json,
        lambda: (
            table(
                ["version", "replaced", "bytes"],
                [[v["version"], when(v["replaced_at"]), v["size_bytes"]] for v in found],
            )
            if found
            else click.echo("No versions.")
        ),
    )


@ledgers.command("archive")
@click.argument("name")
@org_option
@json_option
@pass_app
def ledgers_archive(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Delete a ledger with its data and versions."""
    app.service.archive_ledger(app.actor, name, org)
    emit({"archived": name}, as_json, lambda: click.echo(f"Archived ledger {name}."))


# audit -------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@click.option("--changes", is_flag=True, help="Who changed what instead (secrets, functions, tokens, keys...).")
@click.option("--secret", default=None, metavar="NAME", help="Only accesses (or changes) of this secret.")
@click.option("--function", default=None, metavar="NAME", help="With --changes: only changes of this function.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@cursor_option
@org_option
@json_option
@click.pass_context
def audit(
    ctx: click.Context,
    changes: bool,
    secret: str | None,
    function: str | None,
    limit: int,
    cursor: str | None,
    org: str | None,
    as_json: bool,
) -> None:
    """Show who read which secret, when, in which run (newest first, a page at a time);
    with --changes, who changed what, when and from where. `logic audit verify` checks
    the change audit's chain."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None  # the root command put it there
    if changes:
        audit_changes(app, secret, function, limit, cursor, org, as_json)
        return
    if function is not None:
        raise click.UsageError("--function lists changes: add --changes")
    rows = app.service.audit(app.actor, secret, org, limit, cursor)
    more_pages(paging.next_cursor(rows, limit, paging.access_key))
    data = [a.to_json() for a in rows]
    emit(
        data,
        as_json,
        lambda: (
            table(
                ["at", "secret", "by", "run"],
                [[when(d["at"]), d["secret"], f"{d['consumer_kind']} {d['consumer']}", d["run_id"]] for d in data],
            )
            if data
            else click.echo("No accesses recorded.")
        ),
    )


def audit_changes(
    app: App, secret: str | None, function: str | None, limit: int, cursor: str | None, org: str | None, as_json: bool
) -> None:
    rows = app.service.list_changes(app.actor, org, secret=secret, function=function, limit=limit, cursor=cursor)
    more_pages(paging.next_cursor(rows, limit, lambda c: (c.id,)))
    data = [c.to_json() for c in rows]

    def detail(d: dict[str, Any]) -> str | None:
        return ", ".join(f"{k}={v}" for k, v in sorted(d["details"].items())) or None

    emit(
        data,
        as_json,
        lambda: (
            table(
                ["id", "at", "by", "from", "action", "target", "details"],
                [[d["id"], when(d["at"]), d["actor"], d["via"], d["action"], d["target"], detail(d)] for d in data],
            )
            if data
            else click.echo("No changes recorded.")
        ),
    )


@audit.command("verify")
@click.option(
    "--head",
    default=None,
    metavar="ID:MAC",
    help="A head an earlier verify printed, kept elsewhere: fail unless the chain still holds it.",
)
@json_option
@pass_app
def audit_verify(app: App, head: str | None, as_json: bool) -> None:
    """Check the change audit's HMAC chain: exit 1 naming the first row that was edited,
    removed, reordered or inserted; else print how many rows hold and the head to keep."""
    result = app.service.verify_changes(app.actor, head)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        if not result.ok:
            click.get_current_context().exit(1)  # the report is on stdout; the status says broken
        return
    if not result.ok:
        raise click.ClickException(f"the change audit does not verify: {result.problem}")
    since = f" (after the checkpoint at row {result.checkpoint_id})" if result.checkpoint_id is not None else ""
    click.echo(f"OK: {result.rows} change(s) verified{since}.")
    if result.anchored is False:
        click.echo("The kept head was pruned since: only the rows after the checkpoint were compared.")
    click.echo(f"Head: {result.head_id}:{result.head_mac}")
    click.echo("Keep the head elsewhere: `logic audit verify --head ID:MAC` then proves the chain still holds it.")


# users, organizations, tokens, keys --------------------------------------------


@cli.group()
def users() -> None:
    """Manage users (admin only)."""


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the new user an admin.")
@json_option
@pass_app
def users_create(app: App, name: str, admin: bool, as_json: bool) -> None:
    """Create a user (each user has a sandbox of their own)."""
    user = app.service.create_user(app.actor, name, admin=admin)
    emit({"name": user.name, "admin": user.is_admin}, as_json, lambda: click.echo(f"Created user {user.name}."))


@cli.group()
def orgs() -> None:
    """Manage organizations and their members."""


@orgs.command("create")
@click.argument("org")
@json_option
@pass_app
def orgs_create(app: App, org: str, as_json: bool) -> None:
    """Create an organization; you become its first member."""
    app.service.create_org(app.actor, org)
    emit({"org": org}, as_json, lambda: click.echo(f"Created organization {org}."))


@orgs.command("add-member")
@click.argument("org")
@click.argument("user")
@json_option
@pass_app
def orgs_add_member(app: App, org: str, user: str, as_json: bool) -> None:
    """Add a user to an organization you belong to."""
    app.service.add_member(app.actor, org, user)
    emit({"org": org, "user": user}, as_json, lambda: click.echo(f"Added {user} to {org}."))


@cli.group()
def tokens() -> None:
    """Manage API tokens."""


@tokens.command("create")
@click.option("--user", "for_user", default=None, help="Create it for this user (admin only).")
@click.option("--label", default=None, help="A note to recognise the token by.")
@json_option
@pass_app
def tokens_create(app: App, for_user: str | None, label: str | None, as_json: bool) -> None:
    """Create an API token; it is shown only once."""
    token = app.service.create_token(app.actor, for_user, label)
    emit({"token": token}, as_json, lambda: click.echo(f"{token}\nThe token is shown only this once: store it now."))


@tokens.command("list")
@click.option("--user", "for_user", default=None, help="Another user's tokens (admin only).")
@json_option
@pass_app
def tokens_list(app: App, for_user: str | None, as_json: bool) -> None:
    """List API tokens by id and label (the tokens themselves are never stored)."""
    rows = app.service.list_tokens(app.actor, for_user)
    emit(
        rows,
        as_json,
        lambda: (
            table(["id", "label", "created"], [[r["id"], r["label"], when(r["created_at"])] for r in rows])
            if rows
            else click.echo("No tokens.")
        ),
    )


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.option("--user", "for_user", default=None, help="Another user's token (admin only).")
@json_option
@pass_app
def tokens_revoke(app: App, token_id: int, for_user: str | None, as_json: bool) -> None:
    """Revoke an API token at once (by the id `tokens list` shows)."""
    app.service.revoke_token(app.actor, token_id, for_user)
    emit({"revoked": token_id}, as_json, lambda: click.echo(f"Revoked token {token_id}."))


@cli.group()
def keys() -> None:
    """Manage encryption keys."""


@keys.command("rotate")
@click.option("--master", is_flag=True, help="Re-wrap the key ring under a new master key.")
@json_option
@pass_app
def keys_rotate(app: App, master: bool, as_json: bool) -> None:
    """Re-encrypt every secret under a new data key (or, with --master, a new master key)."""
    result = app.service.rotate_keys(app.actor, master=master)

    def human() -> None:
        if master and result["master_key"] == "LOGIC_MASTER_KEY_NEXT":
            click.echo(
                "The key ring is now wrapped by LOGIC_MASTER_KEY_NEXT. On every node, in any order: make it "
                "LOGIC_MASTER_KEY and unset LOGIC_MASTER_KEY_NEXT (until then each node opens the ring with either)."
            )
        elif master:
            click.echo(f"New master key written to {result['master_key']}.")
            if app.settings.master_key is not None:
                click.echo("LOGIC_MASTER_KEY is set: put that file's contents into it, then delete the file.")
        else:
            click.echo(
                f"Data key {result['data_key_id']} now encrypts "
                f"{result['secrets_reencrypted']} secret(s); older data keys are removed."
            )

    emit(result, as_json, human)


# functions ---------------------------------------------------------------------


def function_rows(fns, today: dict[str, dict[str, int]]) -> list[list[Any]]:
    rows = []
    for f in fns:
        counts = today.get(f.id) or no_runs()
        rows.append(
            [
                f.name,
                f.id,
                f.version,
                "yes" if f.enabled else "no",
                ", ".join(t.get("event_name") or t.get("cron", "") for t in f.manifest.get("triggers", [])) or None,
                ", ".join(f.manifest.get("secrets", [])) or None,
                f"{counts['success']}/{counts['error']}/{counts['timeout']}",
                when(f.updated_at),
            ]
        )
    return rows


def trigger_details(fn, rows) -> list[dict[str, Any]]:
    """The manifest's triggers with what the store knows of each: enabled, and a schedule's
    next fire time (None once its window is over)."""
    details = []
    for index, row in enumerate(rows):
        declared = fn.manifest.get("triggers", [])
        entry = dict(declared[index]) if index < len(declared) else {"type": row.kind}
        entry["enabled"] = row.enabled
        if row.kind == "schedule":
            entry["next_fire_at"] = row.next_fire_at
        details.append(entry)
    return details


def trigger_line(trigger: dict[str, Any]) -> str:
    kind = str(trigger.get("type"))
    what = {"event": trigger.get("event_name"), "schedule": trigger.get("cron"), "ledger_change": trigger.get("ledger")}
    line = f"{kind} {what.get(kind) or ''}".rstrip() + ("" if trigger.get("enabled", True) else "  (disabled)")
    if kind == "schedule":
        line += f"  next: {when(trigger.get('next_fire_at')) or 'none (its window is over)'}"
    return line


def print_run(record: dict) -> None:
    """A run record as a person reads it; everything in it is already redacted."""
    trig = record["trigger"]
    click.echo(
        f"run {record['id']}  {record['status'].upper()}  {record['duration_ms']} ms  "
        f"({trig['type']}{' ' + trig['event_id'] if trig.get('event_id') else ''}, {when(record['started_at'])})"
    )
    if record.get("replay_of"):
        click.echo(f"  replay of run {record['replay_of']}")
    event = trig.get("event")
    if event:
        click.echo(f"  event {event.get('name')}: {event.get('data')}  (from {event.get('source')})")
    if trig.get("scheduled_at"):
        click.echo(f"  scheduled at {when(trig['scheduled_at'])}  cron {trig.get('cron')}")
    for line in record["logs"]:
        click.echo(f"  [{line['level']}] {line['message']}")
    if record["secrets_accessed"]:
        click.echo(f"  secrets read: {', '.join(record['secrets_accessed'])}")
    for event in record["events_published"]:
        click.echo(f"  published {event['name']}: {event['data']}")
    if record["error"]:
        err = record["error"]
        click.echo(f"  error: {err['type']}: {err['message']}")
        if err.get("traceback"):
            for line in err["traceback"].rstrip().splitlines():
                click.echo(f"    {line}")
    elif record["status"] == "success":
        click.echo(f"  result: {json.dumps(record['result'])}")


@cli.group()
def functions() -> None:
    """Deploy, run and inspect Logic functions."""


@functions.command("list")
@org_option
@json_option
@pass_app
def functions_list(app: App, org: str | None, as_json: bool) -> None:
    """List deployed functions, with today's (UTC) success/error/timeout run counts."""
    fns = app.service.list_functions(app.actor, org)
    today = app.service.runs_today(app.actor, org)
    emit(
        [{**f.to_json(), "runs_today": today.get(f.id) or no_runs()} for f in fns],
        as_json,
        lambda: (
            table(
                ["name", "id", "version", "enabled", "triggers", "secrets", "today ok/err/timeout", "updated"],
                function_rows(fns, today),
            )
            if fns
            else click.echo("No functions.")
        ),
    )


@functions.command("get")
@click.argument("name")
@click.option("--source", "with_source", is_flag=True, help="Include the source code.")
@org_option
@json_option
@pass_app
def functions_get(app: App, name: str, with_source: bool, org: str | None, as_json: bool) -> None:
    """Show a function (by name or id): each trigger with whether it is enabled, and each
    schedule's next fire time."""
    fn = app.service.get_function(app.actor, name, org)
    data = fn.to_json(with_source=with_source)
    data["triggers"] = trigger_details(fn, app.service.function_triggers(app.actor, fn.id, org))

    def human() -> None:
        for key in (
            "name",
            "id",
            "owner",
            "version",
            "enabled",
            "entry",
            "description",
            "secrets",
            "limits",
        ):
            click.echo(f"{key + ':':13} {json.dumps(data[key]) if isinstance(data[key], (list, dict)) else data[key]}")
        click.echo(f"{'triggers:':13} {'' if data['triggers'] else 'none'}")
        for trigger in data["triggers"]:
            click.echo(f"  {trigger_line(trigger)}")
        if with_source:
            click.echo("\n" + fn.source)

    emit(data, as_json, human)


@functions.command("deploy")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--test-event", default=None, metavar="NAME", help="Test-run with this event first; deploy only if it succeeds."
)
@click.option("--test-data", default=None, metavar="DATA", help="The test event's data (needs --test-event).")
@org_option
@json_option
@pass_app
def functions_deploy(
    app: App, path: Path, test_event: str | None, test_data: str | None, org: str | None, as_json: bool
) -> None:
    """Deploy DIR (holding one NAME.logic.json and NAME.py) or a NAME.logic.json; each deploy is a new version.

    With --test-event the files are test-run first (nothing stored but the access audit):
    a run that does not succeed is printed, nothing is deployed, and the exit code is 1.
    """
    if test_event is None:
        if test_data is not None:
            raise click.UsageError("--test-data needs --test-event")
        fn = app.service.deploy_function(app.actor, path, org)
        emit(fn.to_json(), as_json, lambda: click.echo(f"Deployed {fn.name} version {fn.version} ({fn.id})."))
        return
    record, deployed = app.runtime().deploy_tested(app.actor, path, event_name=test_event, data=test_data, org=org)
    if as_json:
        emit({"test_run": record, "deployed": deployed.to_json() if deployed else None}, True, lambda: None)
    else:
        print_run(record)
    if deployed is None:
        raise click.ClickException(f"the test run ended {record['status']}: nothing was deployed")
    if not as_json:
        click.echo(f"Deployed {deployed.name} version {deployed.version} ({deployed.id}).")


@functions.command("execute")
@click.argument("target")
@click.option("--event", "event_name", default=None, metavar="NAME", help="The event name the run sees.")
@click.option("--data", default=None, help="The event data (text; JSON is passed through as text).")
@org_option
@json_option
@pass_app
def functions_execute(
    app: App, target: str, event_name: str | None, data: str | None, org: str | None, as_json: bool
) -> None:
    """Test-run local files (PATH: nothing deployed) or run a deployed function (NAME) now.

    Prints the run record; exits 0 whatever the run's status.
    """
    if data is not None and event_name is None:
        raise click.UsageError("--data needs --event")
    local = Path(target)
    what = local if local.exists() else target  # a path on this machine, else a deployed name or id
    record = app.runtime().execute_function(app.actor, what, event_name=event_name, data=data, org=org)
    emit(record, as_json, lambda: print_run(record))


@functions.command("logs")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@cursor_option
@click.option("--follow", "-f", is_flag=True, help="Then print each new run as it ends (from `logic serve`).")
@url_option
@org_option
@json_option
@pass_app
def functions_logs(
    app: App, name: str, limit: int, cursor: str | None, follow: bool, url: str | None, org: str | None, as_json: bool
) -> None:
    """Show the latest runs of a function, newest first (with --follow: oldest first, then live;
    --json then prints one run per line)."""
    if follow:
        fn = app.service.get_function(app.actor, name, org)
        path = f"{_owner_path(org)}/logic/functions/{fn.id}/runs/stream"
        _follow_records(
            app, url, path, lambda: app.service.function_runs(app.actor, fn.id, org, limit), print_run, as_json
        )
        return
    runs = app.service.function_runs(app.actor, name, org, limit, cursor)
    more_pages(paging.next_cursor(runs, limit, paging.run_key))

    def human() -> None:
        if not runs:
            click.echo("No runs yet.")
        for record in runs:
            print_run(record)

    emit(runs, as_json, human)


def _toggle(enabled: bool):
    @click.argument("name")
    @org_option
    @json_option
    @pass_app
    def command(app: App, name: str, org: str | None, as_json: bool) -> None:
        fn = app.service.set_function_enabled(app.actor, name, enabled, org)
        emit(fn.to_json(), as_json, lambda: click.echo(f"{'Enabled' if enabled else 'Disabled'} {fn.name}."))

    return command


functions.command("enable", help="Let triggers run the function again.")(_toggle(True))
functions.command("disable", help="Stop triggers from running the function (it stays deployed).")(_toggle(False))


@functions.command("delete")
@click.argument("name")
@org_option
@json_option
@pass_app
def functions_delete(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Delete a function, its versions and its runs; its secrets become unused by it."""
    app.service.delete_function(app.actor, name, org)
    emit({"deleted": name}, as_json, lambda: click.echo(f"Deleted function {name}."))


@cli.group()
def db() -> None:
    """The database itself (an operator's commands)."""


@db.command("migrate")
@json_option
@click.pass_obj
def db_migrate(app: App, as_json: bool) -> None:
    """Bring the database's schema up to date (every command does it on open; run this when
    upgrading, before the servers start). Needs no master key."""
    before, after = Service.migrate_database(app.settings)
    data = {"database": str(app.settings.database_shown), "from_version": before, "to_version": after}

    def human() -> None:
        if before == after:
            click.echo(f"The database is up to date (schema version {after}).")
        else:
            click.echo(f"Migrated the database from schema version {before} to {after}.")

    emit(data, as_json, human)


@cli.group()
def runs() -> None:
    """Inspect run records."""


@runs.command("show")
@click.argument("run_id")
@org_option
@json_option
@pass_app
def runs_show(app: App, run_id: str, org: str | None, as_json: bool) -> None:
    """Show one run record."""
    record = app.service.get_run(app.actor, run_id, org=org)
    emit(record, as_json, lambda: print_run(record))


@runs.command("replay")
@click.argument("run_id")
@org_option
@json_option
@pass_app
def runs_replay(app: App, run_id: str, org: str | None, as_json: bool) -> None:
    """Run the function's current version again with the input of RUN_ID (its event,
    schedule time or ledger change); prints the new run, marked replay_of. Exits 0
    whatever the new run's status."""
    record = app.runtime().replay_run(app.actor, run_id, org=org)
    emit(record, as_json, lambda: print_run(record))


# events ------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.argument("data", required=False)
@org_option
@json_option
@pass_app
def publish(app: App, name: str, data: str | None, org: str | None, as_json: bool) -> None:
    """Publish an event; it is stored durably and delivered by `logic serve`."""
    accepted = app.service.publish_event(app.actor, name, data, org)
    emit(
        accepted,
        as_json,
        lambda: click.echo(f"Published {name} ({accepted['id']}): {accepted['deliveries']} delivery(ies) queued."),
    )


# live tails (runtime/tail.py) ----------------------------------------------------------


def _owner_path(org: str | None) -> str:
    return f"/v1/orgs/{quote(org, safe='')}" if org else "/v1"


def _follow_records(app: App, url: str | None, path: str, history, show, as_json: bool) -> None:
    """The recent records (oldest first) once the stream is open, then each new one; a
    record both listed and streamed is printed once."""
    printed: set[Any] = set()

    def emit_one(record: dict) -> None:
        key = record.get("id")
        if key is not None and key in printed:
            return
        printed.add(key)
        click.echo(json.dumps(record)) if as_json else show(record)

    def on_open() -> None:
        for record in reversed(history()):
            emit_one(record)

    click.echo("Following (Ctrl-C to stop).", err=True)
    tail(app, url, path, lambda frame: emit_one(frame.data), on_open=on_open)


def tail(app: App, url: str | None, path: str, on_frame, *, on_open=lambda: None, keep_going=lambda: True) -> None:
    """Follow a stream of the server until Ctrl-C, with a temporary token unless LOGIC_TOKEN gives one."""
    from runtime.tail import TEMPORARY_LABEL, follow

    server = url or f"http://{app.settings.host}:{app.settings.port}"
    note = lambda message: click.echo(message, err=True)  # noqa: E731
    token = os.environ.get("LOGIC_TOKEN")
    try:
        if token:
            follow(server, path, token, on_frame, on_reconnect=note, on_open=on_open, keep_going=keep_going)
        else:
            with app.service.temporary_token(app.actor, TEMPORARY_LABEL) as temporary:
                follow(server, path, temporary, on_frame, on_reconnect=note, on_open=on_open, keep_going=keep_going)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("prefix", required=False)
@click.option("--max", "max_events", type=click.IntRange(1), default=None, help="Stop after this many events.")
@url_option
@org_option
@json_option
@pass_app
def subscribe(
    app: App, prefix: str | None, max_events: int | None, url: str | None, org: str | None, as_json: bool
) -> None:
    """Print the owner's events as they are published (all, or those starting with PREFIX)."""
    app.service.owner_for(app.actor, org)  # a foreign org: refused here, before any connection
    path = _owner_path(org) + "/events" + (f"/{quote(prefix, safe='')}" if prefix else "")
    seen = 0

    def show(frame) -> None:
        nonlocal seen
        seen += 1
        event = {"name": frame.event, **frame.data}
        if as_json:
            click.echo(json.dumps(event))
        else:
            click.echo(f"{event.get('published_at')}  {event['name']}  {event.get('data') or ''}")

    what = f'events starting with "{prefix}"' if prefix else "all events"
    click.echo(f"Following {what} of {org or 'your sandbox'} (Ctrl-C to stop).", err=True)
    tail(app, url, path, show, keep_going=lambda: max_events is None or seen < max_events)


# integrations ------------------------------------------------------------------


@cli.group()
def integrations() -> None:
    """Webhook integrations: fire on events whose name starts with a prefix."""


@integrations.command("list")
@org_option
@json_option
@pass_app
def integrations_list(app: App, org: str | None, as_json: bool) -> None:
    """List integrations."""
    records = app.service.list_integrations(app.actor, org)
    emit(
        [r.to_json() for r in records],
        as_json,
        lambda: (
            table(
                ["name", "id", "event prefix", "enabled", "secrets"],
                [
                    [r.name, r.id, r.event_prefix, "yes" if r.enabled else "no", ", ".join(r.secrets) or None]
                    for r in records
                ],
            )
            if records
            else click.echo("No integrations.")
        ),
    )


@integrations.command("get")
@click.argument("name")
@org_option
@json_option
@pass_app
def integrations_get(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Show an integration (by name or id)."""
    record = app.service.get_integration(app.actor, name, org)
    emit(record.to_json(), as_json, lambda: click.echo(json.dumps(record.to_json(), indent=2)))


@integrations.command("create")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@org_option
@json_option
@pass_app
def integrations_create(app: App, file: Path, org: str | None, as_json: bool) -> None:
    """Create an integration from NAME.webhook.json."""
    from runtime.integrations.spec import load_spec

    record = app.service.create_integration(app.actor, load_spec(file), org)
    emit(record.to_json(), as_json, lambda: click.echo(f"Created integration {record.name} ({record.id})."))


@integrations.command("update")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@org_option
@json_option
@pass_app
def integrations_update(app: App, file: Path, org: str | None, as_json: bool) -> None:
    """Replace an integration (matched by the file's name) with NAME.webhook.json."""
    from runtime.integrations.spec import load_spec, parse_spec

    spec = load_spec(file)
    # The name as the spec makes it (a Particle export's "Record my metric" is Record-my-metric).
    name = parse_spec(spec, filename=file.name).name
    record = app.service.update_integration(app.actor, name, spec, org)
    emit(record.to_json(), as_json, lambda: click.echo(f"Updated integration {record.name}."))


@integrations.command("delete")
@click.argument("name")
@org_option
@json_option
@pass_app
def integrations_delete(app: App, name: str, org: str | None, as_json: bool) -> None:
    """Delete an integration; its secrets become unused by it."""
    app.service.delete_integration(app.actor, name, org)
    emit({"deleted": name}, as_json, lambda: click.echo(f"Deleted integration {name}."))


@integrations.command("logs")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@cursor_option
@click.option("--follow", "-f", is_flag=True, help="Then print each new request as it is logged (from `logic serve`).")
@url_option
@org_option
@json_option
@pass_app
def integrations_logs(
    app: App, name: str, limit: int, cursor: str | None, follow: bool, url: str | None, org: str | None, as_json: bool
) -> None:
    """Show the latest webhook requests and responses (secret values masked)."""
    if follow:
        integration = app.service.get_integration(app.actor, name, org)
        path = f"{_owner_path(org)}/integrations/{integration.id}/logs/stream"
        history = lambda: app.service.integration_logs(app.actor, integration.id, org, limit)  # noqa: E731
        _follow_records(app, url, path, history, lambda entry: click.echo(json.dumps(entry, indent=2)), as_json)
        return
    logs = app.service.integration_logs(app.actor, name, org, limit, cursor)
    more_pages(paging.next_cursor(logs, limit, paging.log_key))
    emit(logs, as_json, lambda: click.echo(json.dumps(logs, indent=2)) if logs else click.echo("No requests yet."))


# serve -------------------------------------------------------------------------


def _roles(_ctx: click.Context, _param: click.Parameter, value: str) -> frozenset[str]:
    from runtime.server import ROLES

    roles = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(roles - ROLES)
    if unknown or not roles:
        raise click.BadParameter(f"use any of {', '.join(sorted(ROLES))}, comma-separated (got {value!r})")
    return roles


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port (default 8080).")
@click.option(
    "--role",
    "roles",
    default="api,worker,scheduler",
    callback=_roles,
    metavar="ROLES",
    help="What this process does: api (HTTP API and console), worker (event delivery and webhooks), "
    "scheduler (cron and housekeeping); any comma-separated subset (default all).",
)
@pass_app
def serve(app: App, host: str | None, port: int | None, roles: frozenset[str]) -> None:
    """Run the HTTP API, event delivery, the cron scheduler and webhooks."""
    from runtime.server import serve as run_server

    run_server(app.settings, host or app.settings.host, app.settings.port if port is None else port, roles=roles)


def main() -> None:
    cli(prog_name="logic")


if __name__ == "__main__":
    main()
