"""What the parent enforces even when the worker itself is compromised.

The worker runs `rogue_executor` (a sandbox that ignores every rule) inside a
real confined worker; the parent must still cap, kill and classify."""

import pytest

from _workers_support import make_job, make_settings, no_secrets
from runtime.workers import WorkerPool

ROGUE = "tests.runtime.workers.rogue_executor"


@pytest.fixture(scope="module")
def rogue():
    settings = make_settings(log_max_bytes=16 * 1024, events_per_run_max=10)
    with WorkerPool(settings, executor=ROGUE) as pool:
        yield pool


def run(pool, behaviour, **options):
    return pool.run(make_job(behaviour, owner="user:rogue", **options), no_secrets)


def test_log_flood_is_killed_as_error(rogue):
    result = run(rogue, "flood-logs")
    assert result.status == "error"
    assert "flooded" in result.error["message"]
    assert sum(len(line["message"]) for line in result.logs) <= 16 * 1024 + 4096 + 200
    assert "truncated" in result.logs[-1]["message"]


def test_empty_log_frames_count_too(rogue):
    result = run(rogue, "flood-empty-logs", timeout_s=5.0)
    assert result.status == "error"
    assert "flooded" in result.error["message"]
    assert len(result.logs) <= 16 * 1024 + 4096 + 1


def test_event_flood_is_capped_then_killed(rogue):
    result = run(rogue, "flood-events")
    assert result.status == "error"
    assert len(result.events) == 10


def test_oversized_frame_is_a_crash(rogue):
    result = run(rogue, "huge-frame")
    assert result.status == "crashed"
    assert "byte limit" in result.error["message"]


@pytest.mark.parametrize("behaviour", ["bad-status", "bad-json", "huge-event", "long-event-name"])
def test_protocol_violations_are_crashes(rogue, behaviour):
    result = run(rogue, behaviour)
    assert result.status == "crashed"
    assert "protocol" in result.error["message"]


def test_unknown_log_level_is_normalised(rogue):
    result = run(rogue, "bad-level")
    assert result.logs == [{"at": result.logs[0]["at"], "level": "info", "message": "hello"}]


def test_exit_without_done_is_a_crash(rogue):
    result = run(rogue, "exit")
    assert result.status == "crashed"
    assert "exited with code 0" in result.error["message"]


def test_real_segfault_is_a_crash(rogue):
    result = run(rogue, "segfault")
    assert result.status == "crashed"
    assert "SIGSEGV" in result.error["message"]


def test_sleeping_worker_is_killed_at_the_deadline(rogue):
    result = run(rogue, "sleep", timeout_s=0.5)
    assert result.status == "timeout"
    assert result.duration_ms < 1500


def test_worker_that_hangs_up_but_lingers_is_killed(rogue):
    result = run(rogue, "close-and-hang")
    assert result.status == "crashed"


def test_secret_request_round_trip(rogue):
    result = rogue.run(make_job("secret", owner="user:rogue", secrets=("KEY",)), lambda name: "v")
    assert result.result == "v"


def test_pool_is_healthy_after_all_that(rogue):
    for _ in range(3):
        assert run(rogue, "fine").status == "success"


def test_undeclared_secret_is_refused_by_the_parent(rogue):
    asked = []
    job = make_job("secret", owner="user:rogue", secrets=("OTHER",))
    result = rogue.run(job, lambda name: asked.append(name) or "v")
    assert asked == []  # on_secret never saw the undeclared name
    assert result.status == "error"
