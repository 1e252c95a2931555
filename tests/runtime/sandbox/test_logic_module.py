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
    assert enc.data_url_decode(enc.data_url_encode(data, "image/png")) == ("image/png", {}, raw)
    assert enc.data_url_bytes(enc.data_url_encode(data, "image/png")) == raw
    assert enc.bytes_to_str(enc.str_to_bytes("wörld")) == "wörld"


def test_encoding_formats():
    assert enc.base64_encode("hi") == "aGk="
    assert enc.base64_decode("aGk") == b"hi"  # missing padding
    assert enc.base64_decode("-_8=") == base64.urlsafe_b64decode("-_8=")  # URL-safe alphabet
    assert enc.base85_encode(b"hi") == base64.b85encode(b"hi").decode()
    assert enc.hex_encode(b"\x01\xab") == "01ab"
    assert enc.data_url_encode("hi", "text/plain") == "data:text/plain;base64,aGk="
    assert enc.data_url_bytes("data:,a%20b") == b"a b"
    assert enc.data_url_mime_type("data:image/png;base64,aGk=") == "image/png"
    assert enc.data_url_mime_type("data:,x") == "text/plain;charset=US-ASCII"


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: enc.base64_decode("a*b="), "invalid base64"),
        (lambda: enc.hex_decode("zz"), "invalid hex"),
        (lambda: enc.base85_decode("~~~~~"), "invalid base85"),
        (lambda: enc.data_url_decode("http://x"), "not a data URL"),
        (lambda: enc.data_url_decode("data:text/plain;base64"), "not a data URL"),
        (lambda: enc.data_url_decode("data:;base64,a*b="), "invalid base64"),
        (lambda: enc.data_url_encode("x", "a/b", {"a b": "c"}), "parameter name 'a b' must be a MIME token"),
        (lambda: enc.data_url_encode("x", "a/b", {"": "c"}), "parameter name '' must be a MIME token"),
        (lambda: enc.data_url_encode("x", "a/b", {"n": "a,b"}), "printable ASCII without ','"),
        (lambda: enc.data_url_encode("x", "a/b", {"n": "é"}), "printable ASCII without ','"),
        (lambda: enc.data_url_encode("x", "a/b", {"n": 1}), "parameter values must be a str, not int"),
        (lambda: enc.data_url_encode("x", "a/b", [("n", "v")]), "takes parameters as a dict, not list"),
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


# data URLs with parameters (Particle's dataUrlEncode / dataUrlDecode) ----------------


def test_data_url_encode_with_parameters():
    assert enc.data_url_encode(b"hi", "image/jpeg", {"filename": "cat.jpg"}) == (
        "data:image/jpeg;filename=cat.jpg;base64,aGk="
    )
    # A value that is not a MIME token is quoted, with '"' and '\' escaped.
    assert enc.data_url_encode("hi", "text/plain", {"name": 'my "cat".txt', "path": "a\\b"}) == (
        'data:text/plain;name="my \\"cat\\".txt";path="a\\\\b";base64,aGk='
    )
    assert (
        enc.data_url_encode("hi")
        == enc.data_url_encode("hi", parameters={})
        == ("data:application/octet-stream;base64,aGk=")
    )


@pytest.mark.parametrize(
    "parameters",
    [{}, {"filename": "cat.jpg"}, {"a": 'quote " and \\ back', "b": "x y;z=1"}, {"charset": "utf-8", "n": ""}],
)
def test_data_url_parameters_round_trip(parameters):
    url = enc.data_url_encode(b"\x00\xff", "image/png", parameters)
    assert enc.data_url_decode(url) == enc.DataUrl("image/png", parameters, b"\x00\xff")


@pytest.mark.parametrize(
    "url,mime,parameters,data",
    [
        ("data:,A%20brief%20note", "text/plain", {"charset": "US-ASCII"}, b"A brief note"),
        ("data:;charset=utf-8,x", "text/plain", {"charset": "utf-8"}, b"x"),
        ("data:text/plain;charset=UTF-8;base64,aGk=", "text/plain", {"charset": "UTF-8"}, b"hi"),
        ("DATA:Image/PNG;BASE64,aGk=", "image/png", {}, b"hi"),  # scheme, type and "base64": any case
        ("data:image/png ; base64,aGk=", "image/png", {}, b"hi"),
        ("data:text/plain;base64;x=1,aGk%3D", "text/plain", {"x": "1"}, b"aGk="),  # not the last: no base64
        ("data:a/b;Name=1;name=2;bad name=3;=4;n;e=,x", "a/b", {"name": "1"}, b"x"),  # the first of a name wins
        ('data:a/b;q="x\\"y;z";r=2,x', "a/b", {"q": 'x"y;z', "r": "2"}, b"x"),
        ("data:nonsense;base64,aGk=", "text/plain", {"charset": "US-ASCII"}, b"hi"),  # not a MIME type
        ("data:text/plain,%E2%82%AC", "text/plain", {}, "€".encode()),
    ],
)
def test_data_url_decode_follows_the_fetch_standard(url, mime, parameters, data):
    assert enc.data_url_decode(url) == (mime, parameters, data)


def test_data_url_decode_gives_fresh_parameters():
    first = enc.data_url_decode("data:,x")
    first.parameters["charset"] = "changed"
    assert enc.data_url_decode("data:,x").parameters == {"charset": "US-ASCII"}


def test_data_url_mime_type_keeps_its_parameters():
    assert enc.data_url_mime_type("data:text/plain;charset=utf-8;base64,aGk=") == "text/plain;charset=utf-8"
    assert enc.data_url_mime_type('data:a/b;n="x y",z') == 'a/b;n="x y"'


def test_data_urls_from_user_code(sandbox_run):
    ran = sandbox_run("""
        import logic
        def main(event):
            url = logic.data_url_encode(b"\\x89PNG", "image/png", {"filename": "cat.png"})
            decoded = logic.data_url_decode(url)
            return [url, decoded.mime_type, decoded.parameters, logic.encoding.hex_encode(decoded.data),
                    logic.encoding.hex_encode(logic.encoding.data_url_decode(url)),
                    logic.encoding.data_url_encode is logic.data_url_encode]
        """)
    assert ran.status == "success", ran.error
    assert ran.result == [
        "data:image/png;filename=cat.png;base64,iVBORw==",
        "image/png",
        {"filename": "cat.png"},
        "89504e47",
        "89504e47",
        True,
    ]


def test_a_data_url_record_is_read_only(sandbox_run):
    ran = sandbox_run("""
        import logic
        def main(event):
            decoded = logic.data_url_decode("data:,x")
            decoded.mime_type = "image/png"
        """)
    assert ran.status == "error"
    assert ran.error["type"] in ("AttributeError", "TypeError")


def test_logic_module_docstring_documents_the_top_level_helpers():
    for name in ("get_context", "data_url_encode", "data_url_decode"):
        assert f"logic.{name}(" in enc.__doc__
