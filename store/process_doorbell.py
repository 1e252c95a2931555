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

The same bell in `<database>-streams/` carries a message: a process with live stream
readers listens there, and every process sends it a reference to each item it commits
for the streams (runtime/events/stream_feed.py).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("logic.store")

LISTING_KEPT_S = 1.0  # a new listener is sent to within this long (its first look finds the rest)
RECV_WAIT_S = 1.0  # how long a listener's recv blocks before it looks at its stop event
MESSAGE_MAX = 4096  # bytes of a message a listener reads (a longer one arrives cut)


class ProcessDoorbell:
    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._listed_at = float("-inf")
        self._listeners: list[str] = []
        self._own: set[str] = set()  # this process's sockets: its in-process doorbell rings them
        self._sender: socket.socket | None = None
        self._dir_fd: int | None = None

    # sending -----------------------------------------------------------------

    def ring(self, message: bytes = b"1") -> None:
        """Send `message` to every other listening process (the doorbell's: new deliveries)."""
        with self._lock:
            for name in self._listening():
                self._send(name, message)

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
        return self._listeners

    def _send(self, name: str, message: bytes) -> None:
        try:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            if self._dir_fd is None:
                self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._sender.sendto(message, f"/proc/self/fd/{self._dir_fd}/{name}")
        except OSError as exc:
            if exc.errno == errno.EAGAIN:  # its queue is full: it has rings enough to look
                return
            self._listeners = [n for n in self._listeners if n != name]
            if exc.errno == errno.ECONNREFUSED:  # left by a process that died
                _unlink_quietly(self.folder / name)
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF):
                self._close_dir()  # the folder was removed (or made again): open it anew

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
                on_message(message)  # anyone who may write the folder may send: trust nothing in it
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


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
