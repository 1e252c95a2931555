"""What the stream feed's tests share (tests/runtime/events/test_stream_feed.py and
tests/security/test_stream_feed_attacks.py): two services on one database standing for two
processes (the API with the readers, the worker doing the work), and bounded waits."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from runtime.events.streams import EVENTS
from store import Settings, Store, process_doorbell
from tests.support import in_process_service

ARRIVES_S = 15.0  # what another process committed reaches a reader within this (a bound, not a figure)


@pytest.fixture
def api_and_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    # A sender lists the bell's folder every LISTING_KEPT_S: make a new reader's socket count at once.
    monkeypatch.setattr(process_doorbell, "LISTING_KEPT_S", 0.0)
    Store.initialize(settings)[0].close()
    update = {"webhook_allow_private": True}
    api = in_process_service(settings.model_copy(update={**update, "node_id": "api"}))
    worker = in_process_service(settings.model_copy(update={**update, "node_id": "worker"}))
    yield api, worker
    api.close()
    worker.close()


async def until(reader, want, timeout_s: float = ARRIVES_S) -> list:
    """The reader's items until `want(items)` holds (or the bound passes)."""
    items: list = []
    deadline = time.monotonic() + timeout_s
    while not want(items) and time.monotonic() < deadline:
        got = await reader.next(timeout=0.2)
        assert got is not None, "the reader was dropped"
        items.extend(got)
    return items


async def ended(reader) -> bool:
    """Whether the reader's stream ends (within the bound), as one dropped for falling behind."""
    deadline = time.monotonic() + ARRIVES_S
    while time.monotonic() < deadline:
        if await reader.next(timeout=0.2) is None:
            return True
    return False


async def listening(api, worker, owner) -> None:
    """Until the API's feed hears the worker (PostgreSQL's LISTEN starts in a thread)."""
    probe = api.streams.open(owner.owner, EVENTS, lambda name: name == "probe")
    try:
        deadline = time.monotonic() + ARRIVES_S
        while time.monotonic() < deadline:
            worker.publish_event(owner, "probe", None)
            if await probe.next(timeout=0.2):
                return
        raise AssertionError("the API's feed never heard the worker")
    finally:
        api.streams.close(probe)


def sockets_of(api) -> tuple[Path, list[str]]:
    """The API's bell folder and the sockets in it (SQLite)."""
    folder = Path(f"{api.store.db.path}-streams")
    return folder, sorted(n.name for n in folder.iterdir() if n.suffix == ".sock")


def send_datagrams(folder: Path, name: str, *messages: bytes) -> None:
    """Messages into a listener's socket, as a stranger with access to the folder would."""
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # a socket path is at most 108 bytes
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.settimeout(5.0)  # blocking: waits for room in the listener's 10-datagram queue
            for message in messages:
                s.sendto(message, f"/proc/self/fd/{folder_fd}/{name}")
    finally:
        os.close(folder_fd)
