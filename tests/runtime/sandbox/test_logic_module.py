"""The `logic` module: publish, log, encoding helpers, and their limits."""

from __future__ import annotations

import base64

import pytest

from runtime.sandbox import logic_module as enc
from runtime.sandbox.testing import default_limits


def test_publish_sends_str_and_json(sandbox_run):
    ran = sandbox_run("""
        import logic
        def main(event):
            logic.publish("a", "raw text")
            logic.publish("b", {"x": [1, 2.5, None, True]})
            logic.publish("c")
        """)
    assert ran.status == "success", ran.error
    assert ran.host.events == [("a", "raw text"), ("b", '{"x":[1,2.5,null,true]}'), ("c", None)]


@pytest.mark.parametrize(
    "call,message",
    [
        ('logic.publish("", "x")', "event name must be 1 to 64 characters, not 0"),
        ('logic.publish("n" * 65, "x")', "event name must be 1 to 64 characters, not 65"),
        ("logic.publish(5)", "event name must be a str, not int"),
        ('logic.publish("n", b"x")', "event data is not JSON-serialisable: 'bytes'"),
        ('logic.publish("n", {1: 2})', "event data has a dict key of type 'int'"),
        ('logic.publish("n", float("nan"))', "event data contains nan"),
    ],
)
def test_publish_refuses_bad_input(sandbox_run, call, message):
    ran = sandbox_run(f"import logic\ndef main(event):\n    {call}\n")
    assert ran.status == "error"
    assert message in ran.error["message"]
    assert ran.host.events == []


def test_publish_is_capped_per_run(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main(event):
            for i in range(5):
                logic.publish("e", str(i))
        """,
        limits=default_limits(events_max=3),
    )
    assert len(ran.host.events) == 3
    assert ran.error == {
        "type": "PublishLimitError",
        "message": "a run may publish at most 3 events",
        "traceback": ran.error["traceback"],
    }
    assert 'logic.publish("e", str(i))' in ran.error["traceback"]


def test_publish_limit_error_can_be_caught(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main(event):
            try:
                logic.publish("a")
                logic.publish("b")
            except logic.PublishLimitError:
                return "stopped"
        """,
        limits=default_limits(events_max=1),
    )
    assert ran.result == "stopped"


def test_event_data_size_is_capped(sandbox_run):
    ran = sandbox_run(
        'import logic\ndef main(event):\n    logic.publish("e", "x" * 101)\n',
        limits=default_limits(event_data_max_bytes=100),
    )
    assert ran.error["message"] == "event data is 101 bytes; the limit is 100 bytes"


def test_log_levels(sandbox_run):
    ran = sandbox_run("""
        import logic
        def main(event):
            logic.log.info("reading", 7, None)
            logic.log.warning("careful")
            logic.log.error("bad", {"a": 1})
        """)
    assert ran.host.logs == [("info", "reading 7 None"), ("warning", "careful"), ("error", "bad {'a': 1}")]


def test_log_is_truncated_with_one_marker(sandbox_run):
    ran = sandbox_run(
        """
        import logic
        def main(event):
            for i in range(100):
                print("0123456789")
            logic.log.error("after the cap")
            return "done"
        """,
        limits=default_limits(log_max_bytes=25),
    )
    assert ran.result == "done"
    # Each line costs its bytes plus a newline: 11 + 11, then 2 of the third line's bytes.
    assert ran.host.logs == [
        ("info", "0123456789"),
        ("info", "0123456789"),
        ("info", "01"),
        ("warning", "[log truncated: limit of 25 bytes reached]"),
    ]


def test_log_cap_counts_utf8_bytes(sandbox_run):
    ran = sandbox_run('def main(event):\n    print("é" * 10)\n', limits=default_limits(log_max_bytes=6))
    assert ran.host.logs[0] == ("info", "éé")  # 2 + 2 bytes, then half a character: dropped
    assert ran.host.logs[1][1] == "[log truncated: limit of 6 bytes reached]"


@pytest.mark.parametrize("data", ["hello wörld", b"\x00\xff\x10binary"])
def test_encoding_round_trips(data):
    raw = data.encode() if isinstance(data, str) else data
    assert enc.base64_decode(enc.base64_encode(data)) == raw
    assert enc.base85_decode(enc.base85_encode(data)) == raw
    assert enc.hex_decode(enc.hex_encode(data)) == raw
    assert enc.data_url_decode(enc.data_url_encode(data, "image/png")) == raw
    assert enc.bytes_to_str(enc.str_to_bytes("wörld")) == "wörld"


def test_encoding_formats():
    assert enc.base64_encode("hi") == "aGk="
    assert enc.base64_decode("aGk") == b"hi"  # missing padding
    assert enc.base64_decode("-_8=") == base64.urlsafe_b64decode("-_8=")  # URL-safe alphabet
    assert enc.base85_encode(b"hi") == base64.b85encode(b"hi").decode()
    assert enc.hex_encode(b"\x01\xab") == "01ab"
    assert enc.data_url_encode("hi", "text/plain") == "data:text/plain;base64,aGk="
    assert enc.data_url_decode("data:,a%20b") == b"a b"
    assert enc.data_url_mime_type("data:image/png;base64,aGk=") == "image/png"
    assert enc.data_url_mime_type("data:,x") == "text/plain;charset=US-ASCII"


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: enc.base64_decode("a*b="), "invalid base64"),
        (lambda: enc.hex_decode("zz"), "invalid hex"),
        (lambda: enc.base85_decode("~~~~~"), "invalid base85"),
        (lambda: enc.data_url_decode("http://x"), "not a data URL"),
        (lambda: enc.bytes_to_str(b"\xff"), "not valid UTF-8"),
        (lambda: enc.base64_encode(5), "takes str or bytes"),
    ],
)
def test_encoding_errors_are_clear(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_encoding_from_user_code(sandbox_run):
    ran = sandbox_run("""
        import logic
        def main(event):
            e = logic.encoding
            return [e.base64_encode("hi"), e.bytes_to_str(e.base64_decode("aGk=")), e.data_url_encode("hi")]
        """)
    assert ran.result == ["aGk=", "hi", "data:application/octet-stream;base64,aGk="]


def test_module_docstring_documents_every_helper():
    for name in vars(enc.ENCODING):
        assert name in enc.__doc__
