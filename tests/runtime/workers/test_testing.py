"""runtime.workers.testing.InProcessPool answers as WorkerPool does: the same WorkerResult for the
same job (but for the times, the duration and the pid), so engine tests may run on it."""

from __future__ import annotations

import threading

import pytest

from runtime.sandbox.testing import default_limits
from runtime.workers.testing import InProcessPool
from tests.runtime.workers.support import make_job, make_settings, no_secrets

SECRETS = {"API_KEY": "k-0123456789", "OTHER": "o-9876543210"}

CASES = {
    "ok": ("def main(event):\n    return {'ok': True, 'data': event.data}\n", {}),
    "error with traceback": (
        "def helper(n):\n    return 10 // n\n\ndef main(event):\n    print('before')\n    return helper(0)\n",
        {},
    ),
    "secrets read": (
        "def main(secrets):\n    return [len(secrets.API_KEY), secrets.get('OTHER')[:2]]\n",
        {"secrets": ("API_KEY", "OTHER")},
    ),
    "undeclared secret": (
        "def main(secrets):\n    name = 'NOT_' + 'DECLARED'\n    return secrets[name]\n",
        {"secrets": ("API_KEY",)},
    ),
    "publish and log": (
        "import logic\ndef main(event):\n    logic.log.warning('careful', 1)\n"
        "    logic.publish('out', 'one')\n    logic.publish('out', None)\n    return 2\n",
        {},
    ),
    "publish past the limit": (
        "import logic\ndef main(event):\n    for i in range(4):\n        logic.publish('many', str(i))\n",
        {"limits": {"events_max": 2}},
    ),
    "log cut at its cap": (
        "def main(event):\n    for i in range(50):\n        print('line', i, 'x' * 20)\n",
        {"limits": {"log_max_bytes": 200}},
    ),
    "result over its cap": ("def main(event):\n    return 'z' * 5000\n", {"limits": {"result_max_bytes": 1000}}),
    "deploy error": ("def main(event):\n    return eval('1')\n", {}),
    "overstays its time limit": (
        "import time\ndef main(event):\n    print('started')\n    time.sleep(0.5)\n    return 'late'\n",
        {"timeout_s": 0.2},
    ),
}


@pytest.fixture(scope="module")
def in_process():
    with InProcessPool(make_settings()) as pool:
        yield pool


def shape(result) -> dict:
    """A WorkerResult without what differs by nature: log times, duration, pid."""
    return {
        "status": result.status,
        "result": result.result,
        "error": result.error,
        "logs": [(line["level"], line["message"]) for line in result.logs],
        "events": result.events,
    }


def on_secret(name: str) -> str:
    return SECRETS[name]


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_job_gives_the_same_result_in_process_and_in_a_worker(pool, in_process, case):
    source, options = CASES[case]
    if "limits" in options:
        options = {**options, "limits": default_limits(**options["limits"])}
    job = make_job(source, owner="user:double", **options)
    real = pool.run(job, on_secret)
    double = in_process.run(job, on_secret)
    assert shape(double) == shape(real)
    assert real.status == {
        "ok": "success",
        "secrets read": "success",
        "publish and log": "success",
        "log cut at its cap": "success",
        "overstays its time limit": "timeout",
    }.get(case, "error")
    assert all(line["at"] for line in double.logs) and double.duration_ms > 0


def test_a_traceback_shows_the_authors_lines(in_process):
    source, _ = CASES["error with traceback"]
    result = in_process.run(make_job(source), no_secrets)
    assert result.error["type"] == "ZeroDivisionError"
    assert 'File "test.py", line 6, in main' in result.error["traceback"]
    assert 'File "test.py", line 2, in helper' in result.error["traceback"]


def test_a_run_that_calls_out_after_its_deadline_is_stopped_there(in_process):
    # No kill in-process: the first log line after the deadline unwinds the run instead.
    source = "import time\ndef main(event):\n    while True:\n        time.sleep(0.05)\n        print('tick')\n"
    result = in_process.run(make_job(source, timeout_s=0.2), no_secrets)
    assert (result.status, result.result) == ("timeout", None)
    assert result.error == {
        "type": "TimeoutError",
        "message": "the run exceeded its time limit of 0.2 s",
        "traceback": "",
    }
    assert result.logs and {line["message"] for line in result.logs} == {"tick"}


def test_on_start_comes_once_the_run_has_its_slot_and_runs_wait_at_the_owners_cap():
    settings = make_settings(workers=2, runs_in_flight_per_owner=1)
    gate, inside = threading.Event(), threading.Event()
    order: list[str] = []

    def read(name: str) -> str:  # the first run holds its slot until the gate opens
        inside.set()
        assert gate.wait(10)
        return "v"

    with InProcessPool(settings) as pool:
        first = make_job("def main(secrets):\n    return secrets.API_KEY\n", secrets=("API_KEY",))
        threads = [threading.Thread(target=lambda: pool.run(first, read, lambda: order.append("first")))]
        threads[0].start()
        assert inside.wait(10)
        second = make_job("def main(event):\n    return 1\n")
        threads.append(threading.Thread(target=lambda: pool.run(second, no_secrets, lambda: order.append("second"))))
        threads[1].start()
        other = pool.run(
            make_job("def main(event):\n    return 2\n", owner="user:bob"), no_secrets, lambda: order.append("bob")
        )
        assert other.result == 2 and order == ["first", "bob"]  # alice's second waits, bob does not
        gate.set()
        for thread in threads:
            thread.join(10)
        assert order == ["first", "bob", "second"]


def test_the_pool_interface():
    pool = InProcessPool(make_settings())
    assert pool.others_busy() is False
    pool.others_busy = lambda: True  # the server sets it; nothing here reads it
    with pool:
        assert pool.run(make_job("def main(event):\n    return 3\n"), no_secrets).result == 3
    from store.errors import WorkerUnavailable

    with pytest.raises(WorkerUnavailable, match="closed"):
        pool.run(make_job("def main(event):\n    return 3\n"), no_secrets)
