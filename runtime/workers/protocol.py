"""Length-prefixed JSON frames: the only thing that crosses a worker socket.

A frame is a 4-byte big-endian payload length, then that many bytes of
UTF-8 JSON (always a JSON object with an "op"). Both directions use it.

Threat: a compromised worker. JSON, never pickle, so the parent never runs
code chosen by the worker while decoding; and the reader checks the length
header against a maximum *before* buffering the payload, so a worker cannot
make the parent allocate more than one frame's worth of memory.

Messages (parent -> worker):
    {"op": "run", "version_key", "source"?, "filename", "entry",
     "declared_secrets", "context", "timeout_s", "memory_mb", "limits", "spin_s"}
    {"op": "secret", "value"} | {"op": "secret_error", "message"}
    {"op": "ledger", "value"} | {"op": "ledger_error", "message"}
    {"op": "diagnose", ...}                  test-only, see worker.py
Messages (worker -> parent):
    {"op": "ready", "pid", "uid", "gid", "netns", "seccomp"}
                                             once, after the jail is in place (pid: 1 in
                                             its own pid namespace; the zygote gives the real one)
    {"op": "log", "level", "message"}        one-way, while running (the parent
                                             stamps the time: its clock is trusted)
    {"op": "publish", "name", "data"}        one-way, while running
    {"op": "mask", "value"}                  one-way, logic.mask: the parent masks the value
    {"op": "secret", "name"}                 request; the parent answers
    {"op": "ledger", "action", "name", "data_json", "mode"}
                                             request (get / set / delete); the parent answers
    {"op": "done", "status", "result_json", "error", "cached"}
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
import time

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
# recv(n) allocates n bytes first: 256 KiB goes through mmap/munmap on every call (~11 us),
# 64 KiB stays on the heap (~1 us). A bigger frame asks for exactly what it still needs.
_RECV_CHUNK = 64 * 1024

_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
_INT_DIGITS_MAX = 20  # every integer the protocol carries fits in 64 bits


def _frame_int(text: str) -> int:
    # Threat: a compromised worker filling frames with 4,000-digit numbers, which int()
    # converts in quadratic time (a 1.6 MB frame of them: ~40 ms of the parent's CPU,
    # with the GIL held). Results travel as JSON text inside a frame, not as numbers.
    if len(text) > _INT_DIGITS_MAX:
        raise ValueError("integer too long for a frame")
    return int(text)


_loads = json.JSONDecoder(parse_int=_frame_int).decode  # one decoder: json.loads(**kw) builds one per call


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame (or too big a one)."""


class TruncatedFrame(ProtocolError):
    """The peer hung up in the middle of a frame (it most likely died)."""


def encode(message: dict) -> bytes:
    """One frame: header and payload in one buffer, so one send syscall."""
    payload = _dumps(message).encode("ascii")
    return _HEADER.pack(len(payload)) + payload


def send(sock, message: dict) -> None:
    sock.sendall(encode(message))


def send_until(sock, data: bytes, deadline: float) -> None:
    """Send a whole frame, raising TimeoutError once `deadline` (time.monotonic()) passes.

    Threat: a worker that stops reading fills the socket buffer; a plain
    sendall would then block the parent forever. The socket stays in blocking
    mode (see FrameReader.read); the kernel is asked not to wait instead.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view, socket.MSG_DONTWAIT) :]
            continue
        except BlockingIOError:
            pass
        _wait(sock, select.POLLOUT, deadline)


def _wait(sock, events: int, deadline: float) -> None:
    """Block until `sock` is ready for `events`, or raise TimeoutError at the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    poller = select.poll()
    poller.register(sock, events)
    if not poller.poll(math.ceil(remaining * 1000)):
        raise TimeoutError


class FrameReader:
    """Buffered frame reader over a stream socket.

    `read()` blocks (or raises the socket's timeout) until one whole frame is
    in; it returns None on a clean EOF between frames.
    """

    __slots__ = ("_sock", "_buf", "_max", "_poller", "received")

    def __init__(self, sock, max_frame: int):
        self._sock = sock
        self._buf = bytearray()
        self._max = max_frame
        self._poller: select.poll | None = None
        self.received = 0  # bytes of whole frames read so far (the parent budgets them per run)

    @property
    def buffered(self) -> bool:
        """Bytes already read from the socket but not yet taken as a frame."""
        return bool(self._buf)

    def read(self, deadline: float | None = None, spin_s: float = 0.0) -> dict | None:
        """Next frame; None on EOF. With a `deadline` (time.monotonic()), raise
        TimeoutError once it passes.

        Threat: a worker dribbling a frame a byte at a time would reset a
        per-recv timeout forever, and one that keeps the socket full would
        never let a wait happen: the deadline is absolute, checked before
        every frame and every recv.

        `spin_s`: before going to sleep, poll the socket for this long. The
        answer to a request usually comes within tens of microseconds, and
        waking a sleeping process on another CPU costs about as much again
        (far more on a virtual machine); see `_recv`.
        """
        buf = self._buf
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError
            if len(buf) >= HEADER_SIZE:
                (size,) = _HEADER.unpack_from(buf)
                if size > self._max:
                    raise ProtocolError(f"frame of {size} bytes is over the {self._max} byte limit")
                end = HEADER_SIZE + size
                if len(buf) >= end:
                    payload = bytes(buf[HEADER_SIZE:end])
                    del buf[:end]
                    self.received += end
                    return _decode(payload)
                want = max(_RECV_CHUNK, end - len(buf))
            else:
                want = _RECV_CHUNK
            if deadline is None and not spin_s:
                chunk = self._sock.recv(want)  # blocking, or the socket's own timeout
            else:
                chunk = self._recv(want, deadline, spin_s)
                spin_s = 0.0  # once per frame: the rest of a frame is already on its way
            if not chunk:
                if buf:
                    raise TruncatedFrame("connection closed in the middle of a frame")
                return None
            buf += chunk

    def _recv(self, want: int, deadline: float | None, spin_s: float) -> bytes:
        """recv without a socket timeout: spin, then poll until the deadline.

        A socket timeout would make Python poll() before every recv(), a
        second system call and a sleep even when the data is already there;
        this way the socket stays in blocking mode and every recv is told not
        to wait.
        """
        sock = self._sock
        if sock.gettimeout() is not None:
            sock.settimeout(None)
        recv = sock.recv
        try:
            return recv(want, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        if spin_s:
            stop = time.monotonic() + spin_s
            if deadline is not None:
                stop = min(stop, deadline)
            while time.monotonic() < stop:
                try:
                    return recv(want, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
        while True:
            if deadline is None:
                self._poller.poll()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._poller.poll(math.ceil(remaining * 1000)):
                    raise TimeoutError
            try:
                return recv(want, socket.MSG_DONTWAIT)
            except BlockingIOError:  # woken with nothing to read: wait again
                continue


def _decode(payload: bytes) -> dict:
    try:
        message = _loads(payload.decode("utf-8"))  # str: json.loads skips sniffing the encoding
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested past the C stack guard
        raise ProtocolError("frame is not valid JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("frame is not a JSON object with an 'op'")
    return message
