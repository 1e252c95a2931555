import socket
import struct
import threading
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
        reader.read(deadline=start + 0.2)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 3.0, elapsed  # at the deadline; the upper bound only for a loaded machine


def test_a_frame_that_arrives_while_spinning_is_read(pair):
    a, b = pair
    reader = protocol.FrameReader(b, 1024)
    threading.Timer(0.01, protocol.send, (a, {"op": "done"})).start()
    assert reader.read(deadline=time.monotonic() + 5, spin_s=0.05) == {"op": "done"}


def test_a_frame_that_arrives_after_the_spin_is_read_after_sleeping(pair):
    a, b = pair
    reader = protocol.FrameReader(b, 1024)
    threading.Timer(0.1, protocol.send, (a, {"op": "done"})).start()
    assert reader.read(deadline=time.monotonic() + 5, spin_s=0.001) == {"op": "done"}
    threading.Timer(0.05, protocol.send, (a, {"op": "again"})).start()
    assert reader.read(spin_s=0.001) == {"op": "again"}  # no deadline: sleeps until it comes


def test_spinning_gives_up_at_the_deadline(pair):
    _a, b = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        protocol.FrameReader(b, 1024).read(deadline=start + 0.1, spin_s=10.0)
    elapsed = time.monotonic() - start
    assert 0.1 <= elapsed < 3.0, elapsed  # at the deadline, long before the 10 s spin would end


def test_reading_with_a_deadline_leaves_the_socket_blocking(pair):
    a, b = pair
    b.settimeout(3.0)  # a socket timeout would poll before every recv
    protocol.send(a, {"op": "x"})
    assert protocol.FrameReader(b, 1024).read(deadline=time.monotonic() + 1) == {"op": "x"}
    assert b.gettimeout() is None


def test_send_until_times_out_when_the_peer_stops_reading(pair):
    a, _b = pair
    big = protocol.encode({"op": "x", "pad": "y" * (8 << 20)})  # far more than a socket buffer
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        protocol.send_until(a, big, start + 0.2)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 4.0, elapsed  # at the deadline; the upper bound only for a loaded machine


def test_send_until_delivers_a_frame_larger_than_the_socket_buffer(pair):
    a, b = pair
    message = {"op": "x", "pad": "y" * (4 << 20)}
    reader = protocol.FrameReader(b, 8 << 20)
    got = []
    thread = threading.Thread(target=lambda: got.append(reader.read(deadline=time.monotonic() + 10)))
    thread.start()
    protocol.send_until(a, protocol.encode(message), time.monotonic() + 10)
    thread.join(10)
    assert got == [message]


def test_a_passed_deadline_raises_even_with_a_frame_waiting(pair):
    """A peer that always has the next frame ready must not keep a reader past its deadline."""
    a, b = pair
    reader = protocol.FrameReader(b, 1 << 20)
    protocol.send(a, {"op": "secret", "name": "X"})
    protocol.send(a, {"op": "secret", "name": "Y"})
    assert reader.read(time.monotonic() + 5) == {"op": "secret", "name": "X"}
    with pytest.raises(TimeoutError):
        reader.read(time.monotonic() - 1.0)  # "Y" is buffered, but the time is up
