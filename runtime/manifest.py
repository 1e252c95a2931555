"""`NAME.logic.json`: the manifest of a Logic function, parsed and checked.

Every problem is collected and reported together, each naming the file and,
where the JSON allows, the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from store.errors import DeployError
from store.secrets import NAME_PATTERN

FUNCTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MANIFEST_SUFFIX = ".logic.json"


def normalize_cron(expr: str) -> str:
    """5 fields as usual; 4 fields mean `minute hour day month` on any weekday."""
    fields = expr.split()
    if len(fields) == 4:
        fields.append("*")
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} must have 4 or 5 fields (minute hour day month [weekday]); "
                         "the finest schedule is once a minute")
    normalized = " ".join(fields)
    if not croniter.is_valid(normalized):
        raise ValueError(f"cron {expr!r} is not a valid cron expression")
    return normalized


def check_timezone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from None
    return name


class EventTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["event"]
    event_name: str = Field(min_length=1, max_length=64)


class ScheduleTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["schedule"]
    cron: str
    timezone: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return normalize_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return check_timezone(value)


Trigger = Annotated[Union[EventTrigger, ScheduleTrigger], Field(discriminator="type")]


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
        if not FUNCTION_NAME.fullmatch(value):
            raise ValueError("name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[str]) -> list[str]:
        for value in values:
            if len(value) > 64 or not NAME_PATTERN.fullmatch(value):
                raise ValueError(f"invalid secret name {value!r}")
        if len(set(values)) != len(values):
            raise ValueError("a secret is declared twice")
        return values


@dataclass(frozen=True)
class FunctionFiles:
    manifest: Manifest
    manifest_json: dict
    source: str
    filename: str  # the source file's name, for error messages and tracebacks


def parse_manifest(data: object, *, filename: str, text: str | None = None, triggers_max: int = 5) -> Manifest:
    """Validate manifest JSON (already decoded); DeployError lists every problem."""
    problems: list[str] = []
    manifest = None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p not in ("event", "schedule"))
            line = _line_of(text, err["loc"])
            where = f"{filename}:{line}" if line else filename
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {loc}: {message}" if loc else f"{where}: {message}")
    if manifest is not None and len(manifest.triggers) > triggers_max:
        line = _line_of(text, ("triggers",))
        problems.append(f"{filename}:{line or 1}: at most {triggers_max} triggers, not {len(manifest.triggers)}")
    if problems:
        raise DeployError(problems)
    return manifest


def load_files(path: Path, *, triggers_max: int = 5) -> FunctionFiles:
    """Read NAME.logic.json and NAME.py from a directory or a manifest path."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*" + MANIFEST_SUFFIX))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            raise DeployError([f"{path}: {what} *{MANIFEST_SUFFIX} files; name one manifest explicitly"
                               if found else f"{path}: no *{MANIFEST_SUFFIX} file here"])
        path = found[0]
    if not path.name.endswith(MANIFEST_SUFFIX):
        if path.suffix == ".py" and path.with_name(path.stem + MANIFEST_SUFFIX).exists():
            path = path.with_name(path.stem + MANIFEST_SUFFIX)
        else:
            raise DeployError([f"{path}: expected a directory or a NAME{MANIFEST_SUFFIX} file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeployError([f"{path.name}:{exc.lineno}: invalid JSON: {exc.msg}"]) from None
    source_path = path.with_name(path.name[: -len(MANIFEST_SUFFIX)] + ".py")
    if isinstance(data, dict) and "source" in data:
        raise DeployError([f"{path.name}: 'source' belongs in {source_path.name}, not in the manifest file"])
    manifest = parse_manifest(data, filename=path.name, text=text, triggers_max=triggers_max)
    try:
        source = source_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeployError([f"{source_path}: the function's source file is missing"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError([f"{source_path}: cannot read: {exc}"]) from None
    return FunctionFiles(manifest, data, source, source_path.name)


def next_fire(cron: str, after: datetime, tz: str | None = None) -> datetime:
    """The first tick strictly after `after`, in UTC (cron read in `tz`, default UTC)."""
    zone = ZoneInfo(tz) if tz else timezone.utc
    return croniter(cron, after.astimezone(zone)).get_next(datetime).astimezone(timezone.utc)


def _line_of(text: str | None, loc: tuple) -> int | None:
    """Best effort: the line of the deepest named key of `loc` in the JSON text."""
    if not text:
        return None
    keys = [p for p in loc if isinstance(p, str) and p not in ("event", "schedule")]
    for key in reversed(keys):
        for number, line in enumerate(text.splitlines(), 1):
            if f'"{key}"' in line:
                return number
    return None


def files_from_json(body: object, *, triggers_max: int = 5) -> FunctionFiles:
    """A function as the HTTP API receives it: the manifest's fields plus "source"."""
    if not isinstance(body, dict):
        raise DeployError(["request body: expected a JSON object with the manifest fields and \"source\""])
    data = dict(body)
    source = data.pop("source", None)
    problems = []
    if not isinstance(source, str) or not source.strip():
        problems.append("source: the function's Python source is required (a non-empty string)")
    try:
        manifest = parse_manifest(data, filename="manifest", triggers_max=triggers_max)
    except DeployError as exc:
        raise DeployError(problems + exc.problems) from None
    if problems:
        raise DeployError(problems)
    return FunctionFiles(manifest, data, source, f"{manifest.name}.py")
