"""The `logic` module that Logic functions import.

    import logic

    logic.publish(name, data=None)
        Publish an event. `name`: 1 to 64 characters. `data`: None, a str
        (sent as is) or any JSON value (dict with str keys, list, str, int,
        float, bool, None), sent as its JSON text. At most 100 events per run
        and 100 KiB of data per event (operator settings); past the event
        limit `publish` raises `PublishLimitError`.

    logic.log.info(*args)  logic.log.warning(*args)  logic.log.error(*args)
        Write one line to the run log; arguments are joined by spaces, like
        print(). print() itself writes "info" lines. A run's log is capped
        (64 KiB by default); past the cap one line
        "[log truncated: limit of N bytes reached]" is written and the rest
        is dropped.

    logic.ledger(name) -> Ledger
        One of the owner's ledgers (see ledger.py): `.get()`, `.set(data,
        mode=logic.REPLACE | logic.MERGE)`, `.delete()`; a refused call raises
        `logic.LedgerError`. Writes are saved with the run: a run that fails
        writes nothing.

    logic.mask(value)
        Mask a value the function derived (a signature, a token it computed)
        as `[[SENSITIVE]]`, with its encodings, in everything the run sends
        back: logs, result, error, published events (see masks.py). `value`:
        a str of 4 characters or more, at most 64 KiB; at most 50 values per
        run. A refused value raises `logic.MaskError` (TypeError for a
        non-str), saying why.

    logic.get_context() -> Context
        The whole context of the run (Particle's getContext()): `.event`,
        `.scheduled`, `.trigger`, `.function_info` and `.secrets`, the very
        objects the entry point can take by name (None where the run has no
        such part). `.secrets` is the accessor itself: each read through it
        is checked and audited like any other.

    logic.data_url_encode(data, mime_type="application/octet-stream", parameters=None) -> str
        "data:<mime_type>[;<name>=<value>...];base64,<base64 of data>", as
        Particle's dataUrlEncode; `parameters` is a dict of str to str (e.g.
        {"filename": "cat.jpg"}); a value that is not a MIME token is quoted.
        `data` is str (UTF-8) or bytes as everywhere here; where Particle's
        takes a str as base64 already, pass logic.encoding.base64_decode(text).
    logic.data_url_decode(url) -> DataUrl(mime_type, parameters, data)
        As Particle's dataUrlDecode, following the Fetch standard's data: URL
        processor: `mime_type` is the essence ("image/png", lower case),
        `parameters` a dict (names lower case), `data` the bytes (base64 or
        percent-encoded). A missing or invalid MIME type reads as
        "text/plain" with {"charset": "US-ASCII"}.

    logic.encoding — conversions in the spirit of Particle's encoding API.
    Functions taking `data` accept str (encoded as UTF-8) or bytes.
        base64_encode(data) -> str           base64_decode(text) -> bytes
        base85_encode(data) -> str           base85_decode(text) -> bytes
            (base85 with the RFC 1924 alphabet, as Python's base64.b85encode)
        hex_encode(data) -> str              hex_decode(text) -> bytes
        data_url_encode(data, mime_type="application/octet-stream", parameters=None) -> str
            the same function as logic.data_url_encode
        data_url_decode(url) -> bytes        data_url_mime_type(url) -> str
            shortcuts: logic.data_url_decode(url).data, and the MIME type
            with its parameters ("text/plain;charset=US-ASCII")
        str_to_bytes(text) -> bytes          bytes_to_str(data) -> str
            (UTF-8; bytes_to_str raises ValueError on invalid UTF-8)

    base64_decode accepts the standard and the URL-safe alphabet, with or
    without padding. Decoders raise ValueError with a short reason on bad input.

Threat model: the module is a read-only facade built per run from bound
methods of the run's `RunOutput` and the run's own context records; nothing
on it leads to the host.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
import urllib.parse
from collections import namedtuple
from typing import Any

from .context import Context
from .ledger import MERGE, REPLACE, LedgerError
from .masks import MaskError
from .modules import ModuleFacade
from .output import PublishLimitError, RunOutput, exact_str

DataUrl = namedtuple("DataUrl", "mime_type parameters data")

# MIME syntax as the WHATWG MIME Sniffing standard reads it (the Fetch standard's data: URLs).
_TOKEN = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_QUOTABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {","}  # a "," would end the URL's MIME part
_HTTP_SPACE = " \t\n\r"
_BASE64_SUFFIX = re.compile(r"; *base64$", re.IGNORECASE)
_DEFAULT_MIME = "text/plain"
_DEFAULT_PARAMETERS = (("charset", "US-ASCII"),)


def _to_bytes(data: Any, func: str) -> bytes:
    if isinstance(data, str):
        return str.__str__(data).encode("utf-8")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise TypeError(f"{func}() takes str or bytes, not {type(data).__name__}")


def _to_text(text: Any, func: str) -> str:
    if isinstance(text, str):
        return str.__str__(text)
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{func}(): input is not ASCII text") from None
    raise TypeError(f"{func}() takes str or bytes, not {type(text).__name__}")


def base64_encode(data: str | bytes) -> str:
    return base64.b64encode(_to_bytes(data, "base64_encode")).decode("ascii")


def base64_decode(text: str | bytes) -> bytes:
    clean = "".join(_to_text(text, "base64_decode").split()).replace("-", "+").replace("_", "/")
    clean += "=" * (-len(clean) % 4)
    try:
        return base64.b64decode(clean, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"base64_decode(): invalid base64 ({exc})") from None


def base85_encode(data: str | bytes) -> str:
    return base64.b85encode(_to_bytes(data, "base85_encode")).decode("ascii")


def base85_decode(text: str | bytes) -> bytes:
    try:
        return base64.b85decode(_to_text(text, "base85_decode"))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"base85_decode(): invalid base85 ({exc})") from None


def hex_encode(data: str | bytes) -> str:
    return _to_bytes(data, "hex_encode").hex()


def hex_decode(text: str | bytes) -> bytes:
    try:
        return bytes.fromhex(_to_text(text, "hex_decode"))
    except ValueError as exc:
        raise ValueError(f"hex_decode(): invalid hex ({exc})") from None


def data_url_encode(
    data: str | bytes, mime_type: str = "application/octet-stream", parameters: dict | None = None
) -> str:
    mime = _to_text(mime_type, "data_url_encode")
    if "," in mime:
        raise ValueError("data_url_encode(): mime_type must not contain ','")
    if parameters is not None and not isinstance(parameters, dict):
        raise TypeError(f"data_url_encode() takes parameters as a dict, not {type(parameters).__name__}")
    params = "".join(f";{_parameter(name, value)}" for name, value in dict.items(parameters or {}))
    return f"data:{mime}{params};base64,{base64_encode(_to_bytes(data, 'data_url_encode'))}"


def _parameter(name: Any, value: Any) -> str:
    name = exact_str(name, "data URL parameter names")
    value = exact_str(value, "data URL parameter values")
    if not name or not set(name) <= _TOKEN:
        raise ValueError(f"data_url_encode(): parameter name {name!r} must be a MIME token (no space, ';', '=', ',')")
    if not set(value) <= _QUOTABLE:
        raise ValueError(f"data_url_encode(): parameter {name!r}: the value must be printable ASCII without ','")
    return _format_parameter(name, value)


def _format_parameter(name: str, value: str) -> str:
    if value and set(value) <= _TOKEN:
        return f"{name}={value}"
    return name + '="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def data_url_decode(url: str) -> DataUrl:
    mime, parameters, data = _parse_data_url(url, "data_url_decode")
    return DataUrl(mime, parameters, data)


def data_url_mime_type(url: str) -> str:
    mime, parameters, _ = _parse_data_url(url, "data_url_mime_type")
    return mime + "".join(f";{_format_parameter(k, v)}" for k, v in parameters.items())


def data_url_bytes(url: str) -> bytes:
    """logic.encoding.data_url_decode: the data alone (logic.data_url_decode has all three parts)."""
    return _parse_data_url(url, "data_url_decode")[2]


def _parse_data_url(url: Any, func: str) -> tuple[str, dict[str, str], bytes]:
    """The Fetch standard's data: URL processor: (MIME essence, parameters, body)."""
    text = _to_text(url, func)
    mime, comma, body = text[5:].partition(",")
    if text[:5].lower() != "data:" or not comma:
        raise ValueError(f"{func}(): not a data URL (expected 'data:[<mime type>][;base64],<data>')")
    mime = mime.strip(_HTTP_SPACE)
    suffix = _BASE64_SUFFIX.search(mime)
    if suffix is not None:
        data = base64_decode(urllib.parse.unquote(body))
        mime = mime[: suffix.start()]
    else:
        data = urllib.parse.unquote_to_bytes(body)
    if mime.startswith(";"):
        mime = _DEFAULT_MIME + mime
    parsed = _parse_mime(mime)
    if parsed is None:
        return _DEFAULT_MIME, dict(_DEFAULT_PARAMETERS), data
    return parsed[0], parsed[1], data


def _parse_mime(text: str) -> tuple[str, dict[str, str]] | None:
    """`type/subtype;name=value...` -> (essence, parameters), or None when it is no MIME type."""
    kind, slash, rest = text.strip(_HTTP_SPACE).partition("/")
    subtype, _, params = rest.partition(";")
    subtype = subtype.rstrip(_HTTP_SPACE)
    if not slash or not kind or not subtype or not set(kind + subtype) <= _TOKEN:
        return None
    parameters: dict[str, str] = {}
    for name, value in _mime_parameters(params):
        # The first of a repeated name wins; names and values outside the grammar are dropped.
        if name and set(name) <= _TOKEN and all(c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in value):
            parameters.setdefault(name, value)
    return f"{kind}/{subtype}".lower(), parameters


def _mime_parameters(text: str) -> list[tuple[str, str]]:
    """`name=value;name="quoted \\" value"` -> [(lower-case name, value)], values unquoted."""
    found: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    while pos < end:
        while pos < end and text[pos] in _HTTP_SPACE:
            pos += 1
        start = pos
        while pos < end and text[pos] not in ";=":
            pos += 1
        name = text[start:pos].lower()
        if pos >= end or text[pos] == ";":
            pos += 1
            continue
        pos += 1  # past "="
        if pos < end and text[pos] == '"':
            value, pos = _quoted(text, pos)
            while pos < end and text[pos] != ";":
                pos += 1
        else:
            start = pos
            while pos < end and text[pos] != ";":
                pos += 1
            value = text[start:pos].rstrip(_HTTP_SPACE)
            if not value:
                pos += 1
                continue
        found.append((name, value))
        pos += 1  # past ";"
    return found


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """An HTTP quoted string starting at `pos` (a '"'): its value, and the position after it."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        pos += 1
        if char == '"':
            break
        if char == "\\" and pos < len(text):
            char = text[pos]
            pos += 1
        out.append(char)
    return "".join(out), pos


def str_to_bytes(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"str_to_bytes() takes str, not {type(text).__name__}")
    return str.__str__(text).encode("utf-8", "surrogatepass")


def bytes_to_str(data: bytes) -> str:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"bytes_to_str() takes bytes, not {type(data).__name__}")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"bytes_to_str(): data is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


ENCODING = ModuleFacade(
    "logic.encoding",
    {
        **{
            f.__name__: f
            for f in (
                base64_encode,
                base64_decode,
                base85_encode,
                base85_decode,
                hex_encode,
                hex_decode,
                data_url_encode,
                data_url_mime_type,
                str_to_bytes,
                bytes_to_str,
            )
        },
        "data_url_decode": data_url_bytes,
    },
)


def build_logic_module(output: RunOutput, context: Context, ledger: Any = None, mask: Any = None) -> ModuleFacade:
    """The `logic` facade of one run; every function writes through `output`."""
    log = ModuleFacade(
        "logic.log",
        {
            "info": lambda *args: output.log_args("info", args),
            "warning": lambda *args: output.log_args("warning", args),
            "error": lambda *args: output.log_args("error", args),
        },
    )

    def get_context() -> Context:
        return context

    return ModuleFacade(
        "logic",
        {  # keep in step with modules.LOGIC_EXPORTS (a test pins it)
            "publish": output.publish,
            "log": log,
            "encoding": ENCODING,
            "PublishLimitError": PublishLimitError,
            "get_context": get_context,
            "data_url_encode": data_url_encode,
            "data_url_decode": data_url_decode,
            "ledger": ledger,
            "LedgerError": LedgerError,
            "REPLACE": REPLACE,
            "MERGE": MERGE,
            "mask": mask,
            "MaskError": MaskError,
        },
    )
