import os
import signal
import threading
import time

import pytest

from runtime.workers import WorkerPool, WorkerUnavailable
from store.errors import NotFound
from tests.runtime.workers.support import EXECUTOR, OK_SOURCE, make_job, make_settings, no_secrets, wait_exited


def test_success_round_trip(pool):
    source = (
        "import json\n"
        "def main(event):\n"
        "    data = json.loads(event.data)\n"
        "    return {'i': data['i'], 'name': event.name, 'list': [1, 2.5, None, 'x']}\n"
    )
    result = pool.run(make_job(source), no_secrets)
    assert result.status == "success", result.error
    assert result.result == {"i": 1, "name": "sensor-test", "list": [1, 2.5, None, "x"]}
    assert result.error is None
    assert result.duration_ms > 0


def test_none_result(pool):
    result = pool.run(make_job("def main(event):\n    pass\n"), no_secrets)
    assert result.status == "success"
    assert result.result is None


def test_secret_read_goes_through_on_secret(pool):
    asked = []

    def on_secret(name):
        asked.append(name)
        return "s3cr3t-" + name

    source = "def main(secrets):\n    return [secrets.API_KEY, secrets.API_KEY, len(secrets.OTHER)]\n"
    result = pool.run(make_job(source, secrets=("API_KEY", "OTHER")), on_secret)
    assert result.status == "success", result.error
    assert result.result == ["s3cr3t-API_KEY", "s3cr3t-API_KEY", len("s3cr3t-OTHER")]
    assert asked == ["API_KEY", "API_KEY", "OTHER"]  # every read asks the parent again


def test_secret_error_reaches_user_code_with_its_message(pool):
    def on_secret(name):
        raise NotFound(f"secret {name} was deleted")

    source = (
        "def main(secrets):\n"
        "    try:\n"
        "        secrets.GONE\n"
        "    except Exception as exc:\n"
        "        return str(exc)\n"
        "    return 'read'\n"
    )
    result = pool.run(make_job(source, secrets=("GONE",)), on_secret)
    assert result.status == "success", result.error
    assert "secret GONE was deleted" in result.result


def test_unexpected_on_secret_failure_is_a_generic_error(pool):
    def on_secret(name):
        raise RuntimeError("database path /secret/place")

    source = "def main(secrets):\n    return secrets.KEY\n"
    result = pool.run(make_job(source, secrets=("KEY",)), on_secret)
    assert result.status == "error"
    assert "KEY" in result.error["message"]
    assert "/secret/place" not in str(result.error)


def test_logs_and_events_arrive_in_order(pool):
    source = (
        "import logic\n"
        "def main(event):\n"
        "    print('first', 1)\n"
        "    logic.log.info('second')\n"
        "    logic.log.warning('third')\n"
        "    logic.log.error('fourth')\n"
        "    logic.publish('out-1', 'text')\n"
        "    logic.publish('out-2', {'a': 1})\n"
        "    return 'ok'\n"
    )
    result = pool.run(make_job(source), no_secrets)
    assert result.status == "success", result.error
    messages = [(line["level"], line["message"]) for line in result.logs]
    assert [m for _level, m in messages] == ["first 1", "second", "third", "fourth"]
    assert [level for level, _m in messages] == ["info", "info", "warning", "error"]
    assert all(line["at"].endswith("Z") and "T" in line["at"] for line in result.logs)
    assert [e["name"] for e in result.events] == ["out-1", "out-2"]
    assert result.events[0]["data"] == "text"
    assert '"a"' in result.events[1]["data"]


def test_warm_path_neither_forks_nor_compiles(pool):
    owner = "user:warm"
    job = make_job("def main(event):\n    return 'v1'\n", owner=owner)
    assert pool.run(job, no_secrets).result == "v1"
    spawns = pool.spawns
    # Same version_key, different source: a worker that did not recompile
    # (and was not even sent the source) still runs the cached v1.
    job.source = "def main(event):\n    return 'v2'\n"
    pids = set()
    for _ in range(5):
        result = pool.run(job, no_secrets)
        assert result.result == "v1"
        pids.add(result.worker_pid)
    assert pool.spawns == spawns
    assert len(pids) == 1


def test_compile_error_is_an_error_result_and_the_worker_survives(pool):
    owner = "user:broken"
    bad = pool.run(make_job("def main(event:\n", owner=owner), no_secrets)
    assert bad.status == "error"
    assert "test.py" in bad.error["message"]
    good = pool.run(make_job(OK_SOURCE, owner=owner), no_secrets)
    assert good.status == "success"
    assert good.worker_pid == bad.worker_pid


def test_runtime_error_keeps_the_worker(pool):
    owner = "user:raises"
    bad = pool.run(make_job("def main(event):\n    return 1 / 0\n", owner=owner), no_secrets)
    assert bad.status == "error"
    assert bad.error["type"] == "ZeroDivisionError"
    good = pool.run(make_job(OK_SOURCE, owner=owner), no_secrets)
    assert good.worker_pid == bad.worker_pid


def test_system_exit_is_an_error_and_the_worker_survives(pool):
    owner = "user:exits"
    result = pool.run(make_job("def main(event):\n    raise SystemExit(3)\n", owner=owner), no_secrets)
    assert result.status == "error"
    after = pool.run(make_job(OK_SOURCE, owner=owner), no_secrets)
    assert after.status == "success"
    assert after.worker_pid == result.worker_pid


def test_one_owner_per_worker(pool):
    pids = {"user:one": set(), "org:two": set()}
    for _ in range(3):
        for owner in pids:
            pids[owner].add(pool.run(make_job(OK_SOURCE, owner=owner), no_secrets).worker_pid)
    assert not pids["user:one"] & pids["org:two"]


def test_concurrent_runs_all_succeed(pool):
    failures = []
    owners = ["user:c0", "user:c1", "user:c0", "org:c2"]

    def work(owner, n):
        job = make_job(f"def main(event):\n    return {n}\n", owner=owner)
        for _ in range(20):
            result = pool.run(job, no_secrets)
            if result.status != "success" or result.result != n:
                failures.append((owner, result.status, result.error))

    threads = [threading.Thread(target=work, args=(owner, n)) for n, owner in enumerate(owners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_worker_that_exits_between_runs_is_replaced(pool):
    owner = "user:dies-idle"
    first = pool.run(make_job(OK_SOURCE, owner=owner), no_secrets)
    os.kill(first.worker_pid, signal.SIGKILL)
    wait_exited(first.worker_pid)  # dead (its socket at EOF) before the next run asks for a worker
    second = pool.run(make_job(OK_SOURCE, owner=owner), no_secrets)
    assert second.status == "success"
    assert second.worker_pid != first.worker_pid


def test_worker_max_runs_recycles():
    with WorkerPool(make_settings(worker_max_runs=3, workers=2), executor=EXECUTOR) as pool:
        pids = [pool.run(make_job(OK_SOURCE), no_secrets).worker_pid for _ in range(7)]
    assert pids[0] == pids[1] == pids[2]
    assert pids[3] == pids[4] == pids[5]
    assert len({pids[0], pids[3], pids[6]}) == 3


def test_at_capacity_idle_workers_of_other_owners_are_evicted():
    with WorkerPool(make_settings(workers=2), executor=EXECUTOR) as pool:
        a = pool.run(make_job(OK_SOURCE, owner="user:a"), no_secrets).worker_pid
        b = pool.run(make_job(OK_SOURCE, owner="user:b"), no_secrets).worker_pid
        c = pool.run(make_job(OK_SOURCE, owner="user:c"), no_secrets).worker_pid
        assert len({a, b, c}) == 3
        with pytest.raises(ProcessLookupError):  # the oldest idle one (a) went (polled for up to 10 s)
            for _ in range(1000):
                os.kill(a, 0)
                time.sleep(0.01)
        assert pool.run(make_job(OK_SOURCE, owner="user:b"), no_secrets).worker_pid == b


def test_when_all_workers_are_busy_run_waits():
    source = "def main(event):\n    n = 0\n    for i in range(300000):\n        n += i\n    return n\n"
    results = []
    with WorkerPool(make_settings(workers=1), executor=EXECUTOR) as pool:
        threads = [
            threading.Thread(target=lambda o=o: results.append(pool.run(make_job(source, owner=o), no_secrets)))
            for o in ("user:x", "user:y", "user:x")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [r.status for r in results] == ["success"] * 3


def test_zygote_death_is_survived():
    with WorkerPool(make_settings(workers=2), executor=EXECUTOR) as pool:
        before = pool.run(make_job(OK_SOURCE, owner="user:z"), no_secrets)
        spawner = pool._spawner
        os.kill(spawner.pid, signal.SIGKILL)
        wait_exited(spawner.pid)
        # ...and the pool has seen it go (the spawner's reader got EOF): a run in between
        # would find a "live" zygote that cannot answer.
        deadline = time.monotonic() + 10
        while spawner.alive:
            assert time.monotonic() < deadline, "the pool did not notice the zygote's death"
            time.sleep(0.005)
        # A new owner needs a spawn: the zygote is restarted, its old workers killed.
        after = pool.run(make_job(OK_SOURCE, owner="user:new"), no_secrets)
        assert after.status == "success"
        again = pool.run(make_job(OK_SOURCE, owner="user:z"), no_secrets)
        assert again.status == "success"
        assert again.worker_pid != before.worker_pid


def test_close_kills_workers_and_zygote():
    pool = WorkerPool(make_settings(), executor=EXECUTOR)
    pid = pool.run(make_job(OK_SOURCE), no_secrets).worker_pid
    zygote = pool._spawner.pid
    pool.close()
    for process in (pid, zygote):
        with pytest.raises(ProcessLookupError):  # polled for up to 10 s
            for _ in range(1000):
                os.kill(process, 0)
                time.sleep(0.01)
    with pytest.raises(WorkerUnavailable):
        pool.run(make_job(OK_SOURCE), no_secrets)
    pool.close()  # idempotent


def test_library_code_that_imports_lazily_works_in_a_confined_worker(pool):
    # datetime.strptime imports _strptime at call time; an isolated worker cannot
    # read the stdlib from disk, so the zygote must have it already.
    source = (
        "from datetime import datetime\n"
        "def main(event):\n"
        "    return datetime.strptime('2026-01-02 03:04', '%Y-%m-%d %H:%M').isoformat()\n"
    )
    result = pool.run(make_job(source), no_secrets)
    assert (result.status, result.result) == ("success", "2026-01-02T03:04:00")


@pytest.mark.parametrize("spin_us", [0, 300])
def test_runs_with_and_without_spinning_read_secrets_and_keep_their_deadline(spin_us):
    """With spinning off (or past 2 x cores runs in flight) both sides sleep in poll()."""
    with WorkerPool(make_settings(worker_spin_us=spin_us), executor=EXECUTOR) as pool:
        source = "def main(secrets):\n    return [secrets.API_KEY for _ in range(3)]\n"
        for _ in range(3):  # a warm worker too: it waited for this job spinning or asleep
            result = pool.run(make_job(source, secrets=("API_KEY",)), lambda name: "v-" + name)
            assert result.status == "success", result.error
            assert result.result == ["v-API_KEY"] * 3
        start = time.monotonic()
        result = pool.run(make_job("def main(event):\n    while True:\n        pass\n", timeout_s=0.5), no_secrets)
        elapsed = time.monotonic() - start
        assert result.status == "timeout"
        # The wall clock's deadline, not the CPU limit's backstop nor the pool's 5 s default.
        assert result.error["message"] == "the run exceeded its time limit of 0.5 s"
        assert result.duration_ms >= 450
        assert elapsed < 4.0, elapsed  # 8 x the deadline: generous on a loaded machine, under 5 s


@pytest.mark.parametrize("http_busy", [False, True])
def test_a_worker_is_told_to_spin_only_while_the_host_has_no_requests_under_way(monkeypatch, http_busy):
    """While HTTP requests are under way the CPUs are not spare: neither the parent nor the
    worker spins for the next frame (the worker's spin took a core from the server and its
    clients: under an HTTP flood the workers' CPU per event fell 880 -> 370 us without it)."""
    from runtime.workers import protocol

    told = []
    encode = protocol.encode

    def recording(message):
        if message.get("op") == "run":
            told.append(message["spin_s"])
        return encode(message)

    monkeypatch.setattr(protocol, "encode", recording)
    with WorkerPool(make_settings(worker_spin_us=300), executor=EXECUTOR) as pool:
        pool.others_busy = lambda: http_busy
        source = "def main(secrets):\n    return secrets.API_KEY\n"
        for _ in range(2):  # a cold worker and a warm one
            result = pool.run(make_job(source, secrets=("API_KEY",)), lambda name: "v-" + name)
            assert (result.status, result.result) == ("success", "v-API_KEY"), result.error
    assert told == ([0.0, 0.0] if http_busy else [0.0003, 0.0003])


def test_secret_reads_past_the_per_run_limit_are_refused_and_not_handed_out():
    asked = []

    def on_secret(name):
        asked.append(name)
        return "v"

    source = (
        "def main(secrets):\n"
        "    got, refused = 0, ''\n"
        "    for _ in range(8):\n"
        "        try:\n"
        "            secrets.API_KEY\n"
        "            got += 1\n"
        "        except Exception as exc:\n"
        "            refused = str(exc)\n"
        "    return [got, refused]\n"
    )
    with WorkerPool(make_settings(secret_reads_per_run_max=5), executor=EXECUTOR) as pool:
        result = pool.run(make_job(source, secrets=("API_KEY",)), on_secret)
        assert result.status == "success", result.error
        assert result.result == [5, "this run read secrets 5 times, the limit per run"]
        assert len(asked) == 5  # the parent handed out (and so audits) five, no more
        again = pool.run(make_job(source, secrets=("API_KEY",)), on_secret)
        assert again.result[0] == 5  # the count is per run
