"""A worker-role process on SQLite (`logic serve --role worker`, Dispatcher(alone=True))
paces its delivery threads: one run at a time while runs are quick (two in flight in one
process contended for its GIL and write lock: ~1.2-1.4x slower), one more for each run in
flight for QUICK_RUN_S or longer, so a slow run holds nobody up."""

from __future__ import annotations

import threading
import time

import pytest

import runtime.events.dispatcher as dispatcher_module
from runtime.manifest import files_from_json
from store import Settings, Store
from tests.support import in_process_service


@pytest.fixture
def service(settings: Settings):
    Store.initialize(settings)[0].close()
    node = in_process_service(settings)
    yield node
    node.close()


def deploy(service, name: str, source: str, event: str) -> None:
    files = files_from_json({"name": name, "source": source, "triggers": [{"type": "event", "event_name": event}]})
    service.deploy_function(service.actor(), files)


def runs_of(service, name: str) -> list[dict]:
    return service.function_runs(service.actor(), name)


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


class Concurrency:
    """The most deliveries the dispatcher carried out at once."""

    def __init__(self, dispatcher):
        self.now = self.most = 0
        self.lock = threading.Lock()
        deliver = dispatcher.deliver

        def counted(*args, **kwargs):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return deliver(*args, **kwargs)
            finally:
                with self.lock:
                    self.now -= 1

        dispatcher.deliver = counted


def test_quick_runs_go_one_at_a_time(service, monkeypatch):
    monkeypatch.setattr(dispatcher_module, "QUICK_RUN_S", 60.0)  # no run here is ever slow
    deploy(service, "quick", "def main(event):\n    return event.data\n", "go")
    for n in range(30):
        service.publish_event(service.actor(), "go", str(n))
    dispatcher = service.dispatcher(threads=4, alone=True)
    concurrency = Concurrency(dispatcher)
    dispatcher.start()
    try:
        wait_for(lambda: len(runs_of(service, "quick")) == 30)
    finally:
        dispatcher.stop(timeout=10)
    assert concurrency.most == 1
    assert sorted(int(r["result"]) for r in runs_of(service, "quick")) == list(range(30))


def test_a_slow_run_lets_another_thread_start_the_next_delivery(service):
    """Without pacing's second rule, the quick event would wait the slow run out."""
    deploy(service, "slow", "import time\ndef main(event):\n    time.sleep(1.5)\n    return 'slow'\n", "slow")
    deploy(service, "quick", "def main(event):\n    return 'quick'\n", "quick")
    service.publish_event(service.actor(), "slow", "x")
    dispatcher = service.dispatcher(threads=2, alone=True)
    concurrency = Concurrency(dispatcher)
    dispatcher.start()
    try:
        wait_for(lambda: concurrency.now == 1)  # the slow run is under way
        service.publish_event(service.actor(), "quick", "y")
        wait_for(lambda: runs_of(service, "quick") and runs_of(service, "slow"))
    finally:
        dispatcher.stop(timeout=10)
    ((quick,), (slow,)) = runs_of(service, "quick"), runs_of(service, "slow")
    assert quick["started_at"] < slow["finished_at"]  # it ran while the slow one still did
    assert concurrency.most == 2


def test_a_node_with_the_api_is_not_paced(service, monkeypatch):
    """The single process (and PostgreSQL's worker nodes) keep every thread at work."""
    monkeypatch.setattr(dispatcher_module, "QUICK_RUN_S", 60.0)
    deploy(service, "slow", "import time\ndef main(event):\n    time.sleep(0.3)\n    return event.data\n", "go")
    for n in range(2):
        service.publish_event(service.actor(), "go", str(n))
    dispatcher = service.dispatcher(threads=2)
    concurrency = Concurrency(dispatcher)
    dispatcher.start()
    try:
        wait_for(lambda: len(runs_of(service, "slow")) == 2)
    finally:
        dispatcher.stop(timeout=10)
    assert concurrency.most == 2
