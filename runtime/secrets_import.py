"""Reading a bulk import of secrets (`logic secrets import`): a `.env` file or a JSON object.

`.env` is read by python-dotenv's parser: `export` prefixes, comments, single and double
quotes with their escapes, and quoted values that span lines. Values are taken as
written: no `${VAR}` expansion, which could pull in another variable. JSON is one object
of `"NAME": "value"` pairs (values are strings). Whole-input problems (too big, not
UTF-8, empty, not an object) raise at once; per-entry problems are collected with their
line (or entry number) so the store reports them together with its own checks
(SecretStore.import_values). Nothing here ever puts a value, or a part of one, into a
message: an unreadable line is named by its number only.

This is the interface's concern (what file formats we read), so it lives in the
runtime; the rules on names and values stay in store/secrets.py.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dotenv.parser import parse_stream

from store.errors import InvalidInput, TooLarge
from store.secrets import ImportEntry
from store.sensitive import Sensitive

Format = Literal["auto", "dotenv", "json"]
FORMATS: tuple[str, ...] = ("auto", "dotenv", "json")

_NEWLINE = re.compile(r"\r\n|\n|\r")  # how python-dotenv counts lines
# Problems listed at most; reading stops there. Threat: 512 KiB of broken lines is 262,144
# problems -- seconds of parsing and a 14 MB answer (and console page) for one request.
PROBLEMS_MAX = 100


@dataclass
class Parsed:
    """What an import holds: its entries, and the problems found while reading it."""

    entries: list[ImportEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse(content: bytes | str, *, format: str = "auto", max_bytes: int, max_count: int) -> Parsed:
    """Entries and per-line problems of an import; InvalidInput or TooLarge for the whole input."""
    if format not in FORMATS:
        raise InvalidInput(f"unknown import format {format!r}: use one of {', '.join(FORMATS)}")
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else bytes(content)
    if len(raw) > max_bytes:
        raise TooLarge(f"the import is {len(raw)} bytes; the limit is {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"the import is not UTF-8 text (line {line} has a byte that is not)") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InvalidInput("the import is empty: nothing to import")
    if format == "auto":
        format = "json" if text.lstrip()[:1] in ("{", "[") else "dotenv"
    parsed = _json(text, max_count) if format == "json" else _dotenv(text, max_count)
    if len(parsed.entries) > max_count:
        raise TooLarge(f"the import has {len(parsed.entries)} entries; at most {max_count} are allowed at once")
    return parsed


def _stop(parsed: Parsed, where: str) -> bool:
    """Whether to stop reading: past max_count entries (the caller refuses the import as
    too large) or at PROBLEMS_MAX problems (said as the last one)."""
    if len(parsed.problems) >= PROBLEMS_MAX:
        parsed.problems.append(f"{where}: stopped after {PROBLEMS_MAX} problems; the rest was not checked")
        return True
    return False


def _dotenv(text: str, max_count: int) -> Parsed:
    parsed = Parsed()
    in_sync = True  # no unreadable line yet: after one, a "name" may be a line of a value
    for binding in parse_stream(io.StringIO(text)):  # a generator: stopping early saves the rest
        if len(parsed.entries) > max_count:
            break
        original = binding.original
        # A binding's line is where the blank lines before it began: count them in.
        leading = original.string[: len(original.string) - len(original.string.lstrip())]
        line = original.line + len(_NEWLINE.findall(leading))
        if binding.error:
            in_sync = False
            parsed.problems.append(f"line {line}: cannot be read as NAME=value (is a quote left open?)")
        elif binding.key is None:
            continue  # a blank line or a comment
        elif binding.value is None:
            parsed.problems.append(f"line {line}: no = after the name (write NAME=value)")
        else:
            parsed.entries.append(ImportEntry(f"line {line}", binding.key, Sensitive(binding.value), in_sync))
            continue
        if _stop(parsed, f"line {line}"):
            break
    return parsed


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its pairs in order, so that a duplicate key is seen, not dropped."""


def _json(text: str, max_count: int) -> Parsed:
    try:
        document = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:  # its msg names the problem, never the text
        raise InvalidInput(f"the import is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidInput("the import is not valid JSON: it is nested too deeply") from None
    if not isinstance(document, _Pairs):
        raise InvalidInput('a JSON import is one object of "NAME": "value" pairs')
    parsed = Parsed()
    for number, (name, value) in enumerate(document, start=1):
        where = f"entry {number}"
        if len(parsed.entries) > max_count:
            break
        if isinstance(value, str):
            parsed.entries.append(ImportEntry(where, name, Sensitive(value)))
        else:
            kind = "an object" if isinstance(value, _Pairs) else type(value).__name__ if value is not None else "null"
            kind = {"list": "an array", "int": "a number", "float": "a number", "bool": "true/false"}.get(kind, kind)
            parsed.problems.append(f"{where}: the value must be a JSON string, not {kind}")
            if _stop(parsed, where):
                break
    return parsed


__all__ = ["FORMATS", "PROBLEMS_MAX", "Format", "Parsed", "parse"]
