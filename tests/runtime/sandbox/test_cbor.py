"""The `cbor` module: device payloads decoded (and encoded) into plain values.

The attacks on its limits are in tests/security/test_function_parity.py."""

from __future__ import annotations

import base64
import math

import cbor2
import pytest

from runtime.sandbox.cbor_module import Tag, build_cbor_module

cbor = build_cbor_module(100 * 1024)

PAYLOAD = {"t": 21.5, "h": 40, "id": "dev-1", "raw": b"\x00\x01", "ok": True, "none": None, "list": [1, -2, 2**70]}


def test_decode_gives_plain_values():
    assert cbor.decode(cbor2.dumps(PAYLOAD)) == PAYLOAD
    assert cbor.decode(bytearray(cbor2.dumps([1, 2]))) == [1, 2]


def test_a_str_is_read_as_base64():
    data = cbor2.dumps(PAYLOAD)
    assert cbor.decode(base64.b64encode(data).decode()) == PAYLOAD
    assert cbor.decode(base64.urlsafe_b64encode(data).decode().rstrip("=")) == PAYLOAD


@pytest.mark.parametrize(
    "hex_item,value",
    [
        ("f7", None),  # undefined
        ("f93c00", 1.0),  # half precision
        ("fa7f800000", math.inf),
        ("c249010000000000000000", 2**64),  # bignum
        ("c349010000000000000000", -(2**64) - 1),  # negative bignum
        ("d9d9f7a0", {}),  # self-described CBOR: the tag is dropped
        ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"),  # indefinite byte string
        ("7f657374726561646d696e67ff", "streaming"),
        ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]),
        ("a201020304", {1: 2, 3: 4}),  # integer keys, as compact device payloads use
    ],
)
def test_cbor_items(hex_item, value):
    assert cbor.decode(bytes.fromhex(hex_item)) == value


def test_tags_become_tag_records():
    assert cbor.decode(bytes.fromhex("c11a6553f100")) == Tag(1, 1700000000)  # epoch time, as sent
    assert cbor.decode(bytes.fromhex("d82a6161")) == Tag(42, "a")  # a tag cbor2 does not know
    # A tag's content comes as lists and dicts too (cbor2 reads it as tuples and frozendicts).
    content = cbor.decode(bytes.fromhex("d82aa101820203"))
    assert content == Tag(42, {1: [2, 3]}) and type(content.value) is dict and type(content.value[1]) is list
    nested = cbor.decode(bytes.fromhex("d82ac11a6553f100"))
    assert nested == Tag(42, Tag(1, 1700000000)) and nested.tag == 42


@pytest.mark.parametrize(
    "hex_item,message",
    [
        ("", "invalid CBOR"),
        ("9a00000005", "invalid CBOR"),  # an array of 5 items, none there
        ("1c", "invalid CBOR"),  # a reserved additional-information value
        ("0000", "1 bytes after the CBOR item"),
        ("62c328", "invalid CBOR"),  # text that is not UTF-8
        ("f0", "simple value 16 is not supported"),
        ("a18201020b", "map keys must be text, bytes, numbers, booleans or null"),
    ],
)
def test_bad_input_is_a_clear_value_error(hex_item, message):
    with pytest.raises(ValueError, match=message) as info:
        cbor.decode(bytes.fromhex(hex_item))
    assert type(info.value) is ValueError  # never a cbor2 exception class


def test_bad_argument_types():
    with pytest.raises(TypeError, match="takes bytes or a base64 str, not int"):
        cbor.decode(5)
    with pytest.raises(ValueError, match="a str must hold the base64 of the CBOR bytes"):
        cbor.decode("not base64!")


def test_encode_round_trips():
    value = {"a": [1, 2.5, "x", b"\x00", None, True], 7: Tag(1, 1700000000), "big": 2**80}
    assert cbor.decode(cbor.encode(value)) == value
    assert cbor.encode((1, 2)) == cbor.encode([1, 2]) == bytes.fromhex("820102")
    assert cbor.encode(bytearray(b"ab")) == cbor2.dumps(b"ab")
    assert cbor.encode(Tag(1, 1700000000)) == bytes.fromhex("c11a6553f100")


@pytest.mark.parametrize(
    "value,error,message",
    [
        ({1, 2}, TypeError, "cannot encode set"),
        (object(), TypeError, "cannot encode object"),
        ({(1, 2): 3}, ValueError, "map keys must be"),
        (Tag(-1, 0), ValueError, "a Tag's number must be an int"),
        (Tag("1", 0), ValueError, "a Tag's number must be an int"),
        (Tag(2**64, 0), ValueError, "a Tag's number must be an int"),
    ],
)
def test_encode_refuses_what_it_cannot_carry(value, error, message):
    with pytest.raises(error, match=message):
        cbor.encode(value)


def test_from_user_code(sandbox_run):
    payload = base64.b64encode(cbor2.dumps({"temp": 21.5, "readings": [1, 2, 3]})).decode()
    ran = sandbox_run(
        """
        import cbor
        from cbor import decode, encode, Tag
        import logic
        def main(event):
            data = decode(event.data)
            stamp = cbor.decode(cbor.encode(Tag(1, 1700000000)))
            out = logic.encoding.base64_encode(encode({"avg": sum(data["readings"]) / 3}))
            return [data, stamp.tag, stamp.value, isinstance(stamp, Tag), out]
        """,
        context={"event": {"name": "device", "data": payload}},
    )
    assert ran.status == "success", ran.error
    assert ran.result == [
        {"temp": 21.5, "readings": [1, 2, 3]},
        1,
        1700000000,
        True,
        base64.b64encode(cbor2.dumps({"avg": 2.0})).decode(),
    ]


def test_errors_in_user_code_are_value_errors(sandbox_run):
    ran = sandbox_run("import cbor\ndef main(event):\n    return cbor.decode(b'\\x00\\x00')\n")
    assert (ran.error["type"], ran.error["message"]) == ("ValueError", "cbor.decode(): 1 bytes after the CBOR item")


def test_module_docstring_documents_every_export():
    from runtime.sandbox import cbor_module

    for name in vars(cbor):
        assert f"cbor.{name}(" in cbor_module.__doc__
