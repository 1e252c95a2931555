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

    logic.encoding — conversions in the spirit of Particle's encoding API.
    Functions taking `data` accept str (encoded as UTF-8) or bytes.
        base64_encode(data) -> str           base64_decode(text) -> bytes
        base85_encode(data) -> str           base85_decode(text) -> bytes
            (base85 with the RFC 1924 alphabet, as Python's base64.b85encode)
        hex_encode(data) -> str              hex_decode(text) -> bytes
        data_url_encode(data, mime_type="application/octet-stream") -> str
            "data:<mime_type>;base64,<base64 of data>"
        data_url_decode(url) -> bytes        data_url_mime_type(url) -> str
            (base64 and percent-encoded data URLs are both read)
        str_to_bytes(text) -> bytes          bytes_to_str(data) -> str
            (UTF-8; bytes_to_str raises ValueError on invalid UTF-8)

    base64_decode accepts the standard and the URL-safe alphabet, with or
    without padding. Decoders raise ValueError with a short reason on bad input.

Threat model: the module is a read-only facade built per run from bound
methods of the run's `RunOutput`; nothing on it leads to the host.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from typing import Any

from .modules import ModuleFacade
from .output import PublishLimitError, RunOutput

_DATA_URL = re.compile(r"^data:([^,]*?),(.*)$", re.DOTALL)


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


def data_url_encode(data: str | bytes, mime_type: str = "application/octet-stream") -> str:
    mime = _to_text(mime_type, "data_url_encode")
    if "," in mime:
        raise ValueError("data_url_encode(): mime_type must not contain ','")
    return f"data:{mime};base64,{base64_encode(_to_bytes(data, 'data_url_encode'))}"


def _split_data_url(url: Any, func: str) -> tuple[str, bool, str]:
    match = _DATA_URL.match(_to_text(url, func))
    if match is None:
        raise ValueError(f"{func}(): not a data URL (expected 'data:[<mime type>][;base64],<data>')")
    params = match.group(1).split(";")
    is_base64 = params[-1].strip().lower() == "base64"
    if is_base64:
        params = params[:-1]
    mime = ";".join(params).strip() or "text/plain;charset=US-ASCII"
    return mime, is_base64, match.group(2)


def data_url_decode(url: str) -> bytes:
    _, is_base64, payload = _split_data_url(url, "data_url_decode")
    if is_base64:
        return base64_decode(urllib.parse.unquote(payload))
    return urllib.parse.unquote_to_bytes(payload)


def data_url_mime_type(url: str) -> str:
    return _split_data_url(url, "data_url_mime_type")[0]


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
        f.__name__: f
        for f in (
            base64_encode,
            base64_decode,
            base85_encode,
            base85_decode,
            hex_encode,
            hex_decode,
            data_url_encode,
            data_url_decode,
            data_url_mime_type,
            str_to_bytes,
            bytes_to_str,
        )
    },
)


def build_logic_module(output: RunOutput) -> ModuleFacade:
    """The `logic` facade of one run; every function writes through `output`."""
    log = ModuleFacade(
        "logic.log",
        {
            "info": lambda *args: output.log_args("info", args),
            "warning": lambda *args: output.log_args("warning", args),
            "error": lambda *args: output.log_args("error", args),
        },
    )
    return ModuleFacade(
        "logic",
        {  # keep in step with modules.LOGIC_EXPORTS (a test pins it)
            "publish": output.publish,
            "log": log,
            "encoding": ENCODING,
            "PublishLimitError": PublishLimitError,
        },
    )
