"""`NAME.logic.json`: the manifest of a Logic function, parsed and checked.

Every problem is collected and reported together, each naming the file and,
where the JSON allows, the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from runtime.events.cron import check_timezone, next_fire_within, normalize_cron, parse_moment
from store.clock import iso, parse_iso
from store.errors import DeployError, InvalidInput
from store.functions import TriggerRow
from store.ledgers import check_ledger_name
from store.secrets import check_declared

RESOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # functions and integrations


def check_resource_name(value: str) -> str:
    """A function's or integration's name (ValueError for pydantic)."""
    if not RESOURCE_NAME.fullmatch(value):
        raise ValueError("name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


MANIFEST_SUFFIX = ".logic.json"
_JUST_BEFORE = timedelta(microseconds=1)  # "strictly after this" includes a tick right at start_at


class _TriggerBase(BaseModel):
    """Each trigger has `enabled` (default true): a disabled one neither matches events nor
    fires, and the function's own `enabled` still applies on top of it."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Stored and shown as written: `enabled` appears only where it turns a trigger off.
        data = cast("dict[str, Any]", handler(self))
        if data.get("enabled") is True:
            del data["enabled"]
        return data


class EventTrigger(_TriggerBase):
    type: Literal["event"]
    event_name: str = Field(min_length=1)  # its limit is a setting: Service.check_function
    enabled: StrictBool = True


class ScheduleTrigger(_TriggerBase):
    """A cron schedule, optionally within a window: ticks before `start_at` or after
    `end_at` (both inclusive bounds) do not fire. Both are ISO 8601; a time without an
    offset is read in `timezone` (UTC by default); both are stored in UTC."""

    type: Literal["schedule"]
    cron: str
    timezone: str | None = None
    start_at: str | None = None
    end_at: str | None = None
    enabled: StrictBool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return normalize_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return check_timezone(value)

    @field_validator("start_at", "end_at")
    @classmethod
    def _moment(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else iso(parse_moment(value, info.data.get("timezone")))

    @field_validator("end_at")
    @classmethod
    def _window(cls, value: str | None, info: ValidationInfo) -> str | None:
        start, cron = info.data.get("start_at"), info.data.get("cron")
        if value is None or start is None:
            return value
        if value <= start:  # both in the store's ISO form: text order is time order
            raise ValueError(f"end_at ({value}) must be after start_at ({start})")
        if cron is None:  # the cron was refused: that problem is reported already
            return value
        begin, end = parse_iso(start), parse_iso(value)
        if next_fire_within(cron, begin - _JUST_BEFORE, info.data.get("timezone"), begin, end) is None:
            raise ValueError(f"cron {cron!r} never fires between start_at and end_at")
        return value


class LedgerChangeTrigger(_TriggerBase):
    """Runs the function when the owner's ledger `ledger` changes (by a run, the API or the
    CLI); `change_type` narrows it to "set" or "delete" (default: both)."""

    type: Literal["ledger_change"]
    ledger: str
    change_type: Literal["set", "delete"] | None = None
    enabled: StrictBool = True

    @field_validator("ledger")
    @classmethod
    def _ledger(cls, value: str) -> str:
        try:
            return check_ledger_name(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


Trigger = Annotated[EventTrigger | ScheduleTrigger | LedgerChangeTrigger, Field(discriminator="type")]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = Field(default="", max_length=1024)
    enabled: bool = True
    entry: str = Field(default="main", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    secrets: list[str] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    limits: Limits | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_resource_name(value)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[str]) -> list[str]:
        return check_declared(values)


def trigger_rows(manifest: Manifest, now: datetime) -> list[TriggerRow]:
    """The manifest's triggers as the store keeps them: a schedule with its first tick
    after `now` inside its window (None when the window is already over)."""
    rows = []
    for t in manifest.triggers:
        if isinstance(t, EventTrigger):
            rows.append(TriggerRow("event", event_name=t.event_name, enabled=t.enabled))
            continue
        if isinstance(t, LedgerChangeTrigger):
            rows.append(TriggerRow("ledger_change", ledger_name=t.ledger, change_type=t.change_type, enabled=t.enabled))
            continue
        start = parse_iso(t.start_at) if t.start_at else None
        end = parse_iso(t.end_at) if t.end_at else None
        first = next_fire_within(t.cron, now, t.timezone, start, end)
        rows.append(
            TriggerRow(
                "schedule",
                cron=t.cron,
                timezone=t.timezone,
                next_fire_at=None if first is None else iso(first),
                enabled=t.enabled,
                start_at=t.start_at,
                end_at=t.end_at,
            )
        )
    return rows


@dataclass(frozen=True)
class FunctionFiles:
    manifest: Manifest
    manifest_json: dict
    source: str
    filename: str  # the source file's name, for error messages and tracebacks
    manifest_text: str | None = None  # the manifest file as read, for the line numbers of later checks

    def manifest_line(self, *path: str | int) -> int | None:
        """The line of a manifest key or list item (`"secrets", 1`), if the file text is known."""
        return _line_of(self.manifest_text, path)


def parse_manifest(data: object, *, filename: str, text: str | None = None) -> Manifest:
    """Validate manifest JSON (already decoded); DeployError lists every problem.

    The shape only: the limits that are operator settings (event-name length, secret-name
    length, triggers per function) are checked by `Service.check_function`."""
    problems: list[str] = []
    manifest = None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path = _data_path(err["loc"])
            loc = ".".join(str(p) for p in path)
            line = _line_of(text, path)
            where = f"{filename}:{line}" if line else filename
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {loc}: {message}" if loc else f"{where}: {message}")
    if problems:
        raise DeployError(problems)
    return cast(Manifest, manifest)  # validated: a ValidationError lists at least one problem


def read_json_file(path: Path) -> tuple[str, object]:
    """A manifest or webhook file: its text and its JSON, or a DeployError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError([f"{path}: cannot read: {exc}"]) from None
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeployError([f"{path.name}:{exc.lineno}: invalid JSON: {exc.msg}"]) from None


def load_files(path: Path) -> FunctionFiles:
    """Read NAME.logic.json and NAME.py from a directory or a manifest path."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*" + MANIFEST_SUFFIX))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            raise DeployError(
                [
                    f"{path}: {what} *{MANIFEST_SUFFIX} files; name one manifest explicitly"
                    if found
                    else f"{path}: no *{MANIFEST_SUFFIX} file here"
                ]
            )
        path = found[0]
    if not path.name.endswith(MANIFEST_SUFFIX):
        if path.suffix == ".py" and path.with_name(path.stem + MANIFEST_SUFFIX).exists():
            path = path.with_name(path.stem + MANIFEST_SUFFIX)
        else:
            raise DeployError([f"{path}: expected a directory or a NAME{MANIFEST_SUFFIX} file"])
    text, data = read_json_file(path)
    source_path = path.with_name(path.name[: -len(MANIFEST_SUFFIX)] + ".py")
    if isinstance(data, dict) and "source" in data:
        raise DeployError([f"{path.name}: 'source' belongs in {source_path.name}, not in the manifest file"])
    manifest = parse_manifest(data, filename=path.name, text=text)
    try:
        source = source_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeployError([f"{source_path}: the function's source file is missing"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError([f"{source_path}: cannot read: {exc}"]) from None
    manifest_json = cast("dict[str, Any]", data)  # it validated as a Manifest: a JSON object
    return FunctionFiles(manifest, manifest_json, source, source_path.name, text)


def _data_path(loc: tuple) -> tuple:
    """pydantic's error location as a path into the JSON: without the union tags it inserts
    after a trigger's index (`triggers.1.event.event_name` -> `triggers.1.event_name`)."""
    path: list = []
    for part in loc:
        if part in ("event", "schedule") and len(path) >= 2 and path[-2] == "triggers" and isinstance(path[-1], int):
            continue
        path.append(part)
    return tuple(path)


_WS = re.compile(r"[ \t\n\r]*")  # matches at any position (maybe nothing): its match is never None


def _line_of(text: str | None, path: tuple) -> int | None:
    """The line where the deepest existing part of `path` (keys and list indexes) sits in the
    JSON text: the key's line for an object member, the element's line for a list item, the
    enclosing object's line for a key that is missing."""
    if not text:
        return None
    decoder = json.JSONDecoder()
    try:
        # A key that is missing altogether: the object's line.
        pos = mark = cast("re.Match[str]", _WS.match(text, 0)).end()
        for part in path:
            found = _member(text, pos, part, decoder)
            if found is None:
                break
            mark, pos = found
        return text.count("\n", 0, mark) + 1
    except (ValueError, IndexError):  # not the JSON we parsed: no line rather than a wrong one
        return None


def _member(text: str, pos: int, part: object, decoder: json.JSONDecoder) -> tuple[int, int] | None:
    """(where the member's key or the element starts, where its value starts) inside the
    object or array at `pos`; for a key given twice, the last one (json.loads keeps it)."""
    opener = text[pos]
    if opener not in "{[" or (opener == "{") != isinstance(part, str):
        return None
    found = None
    index = 0
    pos = cast("re.Match[str]", _WS.match(text, pos + 1)).end()
    if text[pos] in "}]":
        return None
    while True:
        start = pos
        if opener == "{":
            key, pos = decoder.raw_decode(text, pos)
            pos = cast("re.Match[str]", _WS.match(text, pos)).end()
            if text[pos] != ":":
                raise ValueError("expected ':'")
            pos = cast("re.Match[str]", _WS.match(text, pos + 1)).end()
            if key == part:
                found = (start, pos)
        elif index == part:
            return (start, pos)
        _value, pos = decoder.raw_decode(text, pos)
        pos = cast("re.Match[str]", _WS.match(text, pos)).end()
        index += 1
        if text[pos] == ",":
            pos = cast("re.Match[str]", _WS.match(text, pos + 1)).end()
            continue
        return found


def files_from_json(body: object) -> FunctionFiles:
    """A function as the HTTP API receives it: the manifest's fields plus "source"."""
    if not isinstance(body, dict):
        raise DeployError(['request body: expected a JSON object with the manifest fields and "source"'])
    data = dict(body)
    source = data.pop("source", None)
    problems = []
    if not isinstance(source, str) or not source.strip():
        problems.append("source: the function's Python source is required (a non-empty string)")
    try:
        manifest = parse_manifest(data, filename="manifest")
    except DeployError as exc:
        raise DeployError(problems + exc.problems) from None
    if problems:
        raise DeployError(problems)
    return FunctionFiles(manifest, data, source, f"{manifest.name}.py")
