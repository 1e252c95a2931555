"""The doorbell between processes on one SQLite file (PostgreSQL's is NOTIFY/LISTEN).

A process that delivers what others publish (`logic serve --role worker` beside
`--role api`) binds a UNIX datagram socket in `<database>-doorbell/`; a transaction
that published deliveries, once committed, sends each socket there one byte. Without
it such a process found new work by its poll alone (LOGIC_DISPATCHER_POLL_S, half
a second). A ring is only a hint, as a NOTIFY is: the poll stays behind it.

Costs: nothing while nobody listens (the folder's listing is kept for a second),
one non-blocking send per listener and committed transaction that published, and
a listener that sleeps in recv. The folder is private to the user (0700), like the
database; a socket left by a killed process refuses the send and is removed.
Socket paths are limited to 108 bytes, so both sides reach the folder through a
descriptor of it (/proc/self/fd/N/name): any home directory works.

The same bell in `<database>-streams/` carries messages (`BatchedBell`): a process with
live stream readers listens there, and every other process sends it references to the
items it commits for the streams (runtime/events/stream_feed.py), batched by a thread of
its own and numbered. A listener's queue holds only `net.unix.max_dgram_qlen` datagrams
(10 by default), so the sender waits for room up to SEND_WAIT_S, and a message it still
could not send leaves a gap in the numbers, which the listener sees.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("logic.store")

LISTING_KEPT_S = 1.0  # a new listener is sent to within this long (its first look finds the rest)
RECV_WAIT_S = 1.0  # how long a listener's recv blocks before it looks at its stop event
MESSAGE_MAX = 4096  # bytes of a message a listener reads (a longer one arrives cut)
BATCH_EVERY_S = 0.005  # a BatchedBell sends at most this often (what came meanwhile goes together)
SEND_WAIT_S = 0.25  # how long it waits for room in a listener's queue before that message is lost
PENDING_MAX = 10_000  # lines waiting for a BatchedBell's thread; past it the oldest are lost


class ProcessDoorbell:
    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._listed_at = float("-inf")
        self._listeners: list[str] = []
        self._lagging: set[str] = set()  # listeners that did not make room in time: not waited for again
        self._own: set[str] = set()  # this process's sockets: its in-process doorbell rings them
        self._sender: socket.socket | None = None
        self._dir_fd: int | None = None

    # sending -----------------------------------------------------------------

    def ring(self, message: bytes = b"1", *, wait_s: float = 0.0) -> None:
        """Send `message` to every other listening process (the doorbell's: new deliveries);
        with `wait_s`, waiting that long for room in a full queue (else it is skipped)."""
        with self._lock:
            pending = list(self._listening())
        # Full queues are tried again together until one deadline. A listener that let its
        # queue stay full for all of it has lost a message (and ends its streams): waiting
        # on it again would hold up everyone else's messages.
        deadline = time.monotonic() + wait_s
        while pending:
            with self._lock:
                pending = [name for name in pending if not self._send(name, message)]
                waited = [name for name in pending if name not in self._lagging]
            if not waited or time.monotonic() >= deadline:
                if wait_s:
                    with self._lock:
                        self._lagging.update(pending)
                return
            pending = waited
            time.sleep(0.001)  # the listeners drain their queues meanwhile

    def anyone_listening(self) -> bool:
        """Whether another process listens (as last listed: within LISTING_KEPT_S)."""
        with self._lock:
            return bool(self._listening())

    def _listening(self) -> list[str]:
        now = time.monotonic()
        if now - self._listed_at >= LISTING_KEPT_S:
            self._listed_at = now
            try:
                names = os.listdir(self.folder)
            except OSError:  # nobody has listened yet (no folder)
                names = []
            self._listeners = [n for n in names if n.endswith(".sock") and n not in self._own]
            self._lagging &= set(self._listeners)  # the gone ones are forgotten
        return self._listeners

    def _send(self, name: str, message: bytes) -> bool:
        """False if `name`'s queue was full (try again if you like), else True (sent, or the
        listener is gone)."""
        try:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            if self._dir_fd is None:
                self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._sender.sendto(message, f"/proc/self/fd/{self._dir_fd}/{name}")
        except OSError as exc:
            if exc.errno == errno.EAGAIN:  # its queue is full (for a ring: it has rings enough to look)
                return False
            self._listeners = [n for n in self._listeners if n != name]
            if exc.errno == errno.ECONNREFUSED:  # left by a process that died
                _unlink_quietly(self.folder / name)
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF):
                self._close_dir()  # the folder was removed (or made again): open it anew
        return True

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    # listening ---------------------------------------------------------------

    def listen(self, on_message: Callable[[bytes], None], stop: threading.Event) -> threading.Thread | None:
        """A thread calling on_message for each message of another process, until `stop` (a
        message that arrives once it is set is dropped); None if the socket cannot be made,
        which is logged."""
        name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
            finally:
                os.close(dir_fd)
            sock.settimeout(RECV_WAIT_S)
        except OSError as exc:
            log.warning("event=doorbell_unavailable folder=%s error=%s", self.folder, exc)
            return None
        with self._lock:
            self._own.add(name)
            self._listed_at = float("-inf")
        thread = threading.Thread(
            target=self._receive, args=(sock, name, on_message, stop), name=f"listen-{self.folder.name}", daemon=True
        )
        thread.start()
        return thread

    def _receive(
        self, sock: socket.socket, name: str, on_message: Callable[[bytes], None], stop: threading.Event
    ) -> None:
        try:
            while not stop.is_set():
                try:
                    message = sock.recv(MESSAGE_MAX)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if stop.is_set():  # a listener that stopped delivers nothing more
                    return
                try:
                    on_message(message)  # anyone who may write the folder may send: trust nothing in it
                except Exception:  # a message must never end the listener
                    log.exception("event=bell_message_failed folder=%s", self.folder)
        finally:
            sock.close()
            _unlink_quietly(self.folder / name)
            with self._lock:
                self._own.discard(name)

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
            self._close_dir()


class BatchedBell:
    """Lines for every other listening process, sent in numbered messages by a thread of its
    own: `<sender> <number>\n<line>\n<line>...` (see the module docstring). A number left out
    says that a message was lost on the way to that listener, or lines before it here."""

    def __init__(self, bell: ProcessDoorbell):
        self.bell = bell
        self.sender = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lines: deque[str] = deque()
        self._lost = False  # lines dropped here since the last message
        self._number = 0
        self._lock = threading.Lock()
        self._rung = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def send(self, line: str) -> None:
        """From any thread; never waits on a listener."""
        with self._lock:
            if self._closed:
                return
            if len(self._lines) >= PENDING_MAX:
                self._lines.popleft()
                self._lost = True
            self._lines.append(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, name="streams-send", daemon=True)
                self._thread.start()
        self._rung.set()

    def _send_loop(self) -> None:
        while not self._closed:
            self._rung.wait()
            self._rung.clear()
            with self._lock:
                lines, self._lines = list(self._lines), deque()
                lost, self._lost = self._lost, False
            if lost:
                self._number += 1  # a number nobody gets: the listeners see the gap
            for group in pack(lines, MESSAGE_MAX):
                self._number += 1
                message = "\n".join([f"{self.sender} {self._number}", *group])
                self.bell.ring(message.encode(), wait_s=SEND_WAIT_S)
            time.sleep(BATCH_EVERY_S)

    def close(self) -> None:
        self._closed = True
        self._rung.set()


def pack(lines: list[str], limit: int, header_max: int = 128) -> list[list[str]]:
    """`lines` in groups that fit a message of `limit` bytes with a header of up to
    `header_max` before them, one per line (a line too long for any message is left out)."""
    groups: list[list[str]] = []
    room = limit - header_max
    size = room  # no group open yet
    for line in lines:
        length = 1 + len(line.encode())
        if length > room:
            continue
        if size + length > room:
            groups.append([])
            size = 0
        groups[-1].append(line)
        size += length
    return groups


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
