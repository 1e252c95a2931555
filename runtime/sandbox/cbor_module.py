"""The `cbor` module: CBOR device payloads, as Particle's Logic offers them (`vendor:cbor-x`).

    import cbor

    cbor.decode(data) -> value
        `data`: bytes, or a str holding their base64 (event data is text, so a
        device's binary payload arrives base64-encoded). Exactly one CBOR item.
        Maps become dicts, arrays lists, text str, byte strings bytes, integers
        int (bignums too), floats float, true/false/null bool/None, undefined
        None. Any other tag becomes `cbor.Tag(tag, value)`: a timestamp stays
        `Tag(1, 1700000000)` for the function to read as it likes.
    cbor.encode(value) -> bytes
        The reverse, for the same types (tuples and lists as arrays, a Tag as
        a tag).
    cbor.Tag(tag, value)
        A tagged item, a read-only named tuple.

Decoding is bounded (threat: a payload crafted to exhaust the worker, or to
make the decoder build host objects):
    - the input is at most the run's event data limit: a device payload is
      never larger than one event;
    - nesting (arrays, maps and tags) is at most MAX_DEPTH, enforced by cbor2
      as it reads, so nothing recurses deeper;
    - no tag constructs an object: cbor2's own decoders (datetime, decimal,
      fractions, regex, MIME messages, UUID, IP addresses, sets, complex,
      shared values, string references) are each replaced by a plain Tag,
      unknown tags reach a Tag through the tag hook, and the result is copied
      into exact plain types, so anything a newer cbor2 builds is refused,
      never handed out;
    - failures are ValueError or TypeError with a short reason: no cbor2
      class reaches the function.
"""

from __future__ import annotations

import io
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import cbor2

from .logic_module import base64_decode
from .modules import ModuleFacade

Tag = namedtuple("Tag", "tag value")

MAX_DEPTH = 64  # device payloads are shallow; the copy below recurses this far at most

# Tags cbor2 decodes itself (tests/security/test_function_parity.py probes 0..70000 for
# more). Bignums stay ints and the self-describe tag 55799 is dropped; the others become
# Tags, so that no datetime, Decimal, Pattern, email Message, IPv4Address... is built.
CBOR2_OWN_TAGS = frozenset({0, 1, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 43000})
_KEPT_TAGS = frozenset({2, 3, 55799})

_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
# cbor2 decodes a tag's content immutable: tuples and its frozendict (the builtin from Python 3.15).
_ARRAYS = frozenset({list, tuple})
_MAPS = frozenset({dict, getattr(cbor2, "frozendict", dict)})


def _as_tag(number: int) -> Callable[[Any, bool], Tag]:
    return lambda value, immutable: Tag(number, value)


_AS_TAGS = {number: _as_tag(number) for number in CBOR2_OWN_TAGS}


def _tag_hook(tag: Any, immutable: bool) -> Tag:
    return Tag(tag.tag, tag.value)


def _plain(value: Any, depth: int) -> Any:
    """A copy in exact plain types: what cbor2 returned, refused if it is anything else."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth >= MAX_DEPTH:
        raise ValueError(f"cbor.decode(): nesting deeper than {MAX_DEPTH} levels")
    if kind in _ARRAYS:
        return [_plain(item, depth + 1) for item in value]
    if kind in _MAPS:
        return {_key(key, "decode"): _plain(item, depth + 1) for key, item in value.items()}
    if kind is Tag:
        return Tag(value.tag, _plain(value.value, depth + 1))
    if value is cbor2.undefined:
        return None
    if kind is cbor2.CBORSimpleValue:
        raise ValueError(f"cbor.decode(): simple value {value.value} is not supported")
    raise ValueError(f"cbor.decode(): a CBOR item decoded as {kind.__name__}, which is not supported")


def _key(key: Any, func: str) -> Any:
    if type(key) in _SCALARS:
        return key
    raise ValueError(f"cbor.{func}(): map keys must be text, bytes, numbers, booleans or null")


def _encodable(value: Any, depth: int) -> Any:
    """An exact-type copy for cbor2 (threat: a user subclass whose methods the encoder would call)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth >= MAX_DEPTH:
        raise ValueError(f"cbor.encode(): nesting deeper than {MAX_DEPTH} levels (or a value that contains itself)")
    if kind is bytearray:
        return bytes(value)
    if kind is list or kind is tuple:
        return [_encodable(item, depth + 1) for item in value]
    if kind is dict:
        return {_key(key, "encode"): _encodable(item, depth + 1) for key, item in dict.items(value)}
    if kind is Tag:
        if type(value.tag) is not int or not 0 <= value.tag < 2**64:
            raise ValueError("cbor.encode(): a Tag's number must be an int from 0 to 2**64 - 1")
        return cbor2.CBORTag(value.tag, _encodable(value.value, depth + 1))
    raise TypeError(f"cbor.encode(): cannot encode {kind.__name__}")


def build_cbor_module(max_bytes: int) -> ModuleFacade:
    """The `cbor` facade of one run; `max_bytes` is the run's event data limit."""

    def decode(data: bytes | str) -> Any:
        if isinstance(data, (bytes, bytearray)):
            raw = bytes(data)
        elif isinstance(data, str):
            try:
                raw = base64_decode(data)
            except ValueError:
                raise ValueError("cbor.decode(): a str must hold the base64 of the CBOR bytes") from None
        else:
            raise TypeError(f"cbor.decode() takes bytes or a base64 str, not {type(data).__name__}")
        if len(raw) > max_bytes:
            raise ValueError(f"cbor.decode(): {len(raw)} bytes of CBOR; the limit is {max_bytes} bytes")
        stream = io.BytesIO(raw)
        decoder = cbor2.CBORDecoder(stream, tag_hook=_tag_hook, semantic_decoders=_AS_TAGS, max_depth=MAX_DEPTH)
        try:
            value = decoder.decode()
        except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"cbor.decode(): invalid CBOR ({exc})") from None
        if stream.tell() != len(raw):
            raise ValueError(f"cbor.decode(): {len(raw) - stream.tell()} bytes after the CBOR item")
        return _plain(value, 0)

    def encode(value: Any) -> bytes:
        plain = _encodable(value, 0)
        try:
            return cbor2.dumps(plain)
        except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"cbor.encode(): {exc}") from None

    return ModuleFacade("cbor", {"decode": decode, "encode": encode, "Tag": Tag})
