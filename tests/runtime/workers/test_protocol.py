import socket
import struct
import time

import pytest

from runtime.workers import protocol


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_round_trip_both_ways(pair):
    a, b = pair
    reader = protocol.FrameReader(b, 1024)
    protocol.send(a, {"op": "log", "message": "héllo \ud800"})
    protocol.send(a, {"op": "done", "status": "success"})
    assert reader.read() == {"op": "log", "message": "héllo \ud800"}
    assert reader.read() == {"op": "done", "status": "success"}


def test_frame_is_one_buffer_with_length_header():
    frame = protocol.encode({"op": "x"})
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    assert frame[4:] == b'{"op":"x"}'


def test_eof_between_frames_is_none(pair):
    a, b = pair
    a.close()
    assert protocol.FrameReader(b, 1024).read() is None


def test_eof_inside_a_frame_is_an_error(pair):
    a, b = pair
    a.sendall(protocol.encode({"op": "x"})[:6])
    a.close()
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameReader(b, 1024).read()


def test_oversized_header_is_refused_before_reading_the_payload(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 10**9))
    with pytest.raises(protocol.ProtocolError, match="over the 1024 byte limit"):
        protocol.FrameReader(b, 1024).read()


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"no_op": 1}', b"\xff\xfe"])
def test_garbage_is_a_protocol_error(pair, payload):
    a, b = pair
    a.sendall(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameReader(b, 1024).read()


def test_deadline_is_absolute_against_a_dribbling_peer(pair):
    a, b = pair
    frame = protocol.encode({"op": "x", "pad": "y" * 100})
    reader = protocol.FrameReader(b, 1024)
    a.sendall(frame[:10])  # then nothing more
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        reader.read(deadline=time.monotonic() + 0.2)
    assert time.monotonic() - start < 1.0
