"""What the parent enforces even when the worker itself is compromised.

The worker runs `rogue_executor` (a sandbox that ignores every rule) inside a
real confined worker; the parent must still cap, kill and classify."""

import pytest

from runtime.workers import WorkerPool
from tests.runtime.workers.support import make_job, make_settings, no_secrets

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
    assert result.error["message"] == "the run exceeded its time limit of 0.5 s"
    # From the deadline on, and (generous on a loaded machine) far below the pool's 5 s default.
    assert 450 <= result.duration_ms < 4000


def test_worker_that_hangs_up_but_lingers_is_killed(rogue):
    result = run(rogue, "close-and-hang")
    assert result.status == "crashed"


def test_secret_request_round_trip(rogue):
    result = rogue.run(make_job("secret", owner="user:rogue", secrets=("KEY",)), lambda name: "v")
    assert result.result == "v"


def test_pool_is_healthy_after_all_that(rogue):
    for _ in range(3):
        assert run(rogue, "fine").status == "success"


def test_undeclared_secret_is_refused_by_the_parent(rogue, store):
    """A worker that skips the sandbox's check asks for a secret its function did not
    declare: the parent's broker (the pool's on_secret in every real run) refuses it, never
    decrypts it, and audits nothing."""
    from runtime.execution.secrets_broker import SecretsBroker

    store.secrets.create("user:rogue", "KEY", "the-real-value")
    broker = SecretsBroker(
        store.secrets,
        owner="user:rogue",
        declared=("OTHER",),
        consumer_kind="logic_function",
        consumer_id="f",
        consumer_name="f",
        run_id="r",
        bytes_max=1024,
        masking_max=1 << 20,
    )
    job = make_job("secret", owner="user:rogue", secrets=("OTHER",))
    result = rogue.run(job, broker.read)
    assert result.status == "error"  # the rogue sandbox does not catch the refusal: its run fails
    assert "the-real-value" not in repr(result)
    assert broker.accesses == [] and broker.values == []


def test_a_worker_that_keeps_the_socket_full_is_stopped_at_the_deadline(rogue):
    """The parent looks at the deadline before every frame, not only before it sleeps: a
    worker that never lets the socket go empty (secret requests, topped up as answers come)
    cannot hold the run thread and its worker slot past the deadline. (It may run into
    the per-run frame budget first: either way it is stopped.)"""
    import time

    start = time.monotonic()
    result = run(rogue, "keep-the-parent-busy:10", timeout_s=0.2)  # it would hold the parent 10 s
    elapsed = time.monotonic() - start
    assert (result.status, result.error["message"]) in (
        ("timeout", "the run exceeded its time limit of 0.2 s"),
        ("error", "the run flooded its frames far past the limit and was stopped"),
    ), round(elapsed, 2)
    # 15 x the deadline, for a loaded machine; still far below the 10 s the worker would take.
    assert elapsed < 3.0, f"a 0.2 s run held the parent for {elapsed:.2f} s"


@pytest.mark.parametrize(
    "behaviour", ["deep-json-frame", "deep-json-result", "deep-but-parseable-result", "nested-error-fields"]
)
def test_deeply_nested_json_from_a_worker_is_a_protocol_crash(rogue, behaviour):
    """json.loads raises RecursionError past ~1,000 levels; a parseable result deeper than
    the sandbox allows, or nested error fields, would make redaction or str() recurse."""
    result = run(rogue, behaviour, timeout_s=2.0)
    assert result.status == "crashed"
    assert "broke the protocol" in result.error["message"]


def test_a_secret_handed_out_is_audited_even_when_the_worker_then_breaks_the_parent(logic_home):
    from runtime.manifest import files_from_json
    from runtime.service import Service
    from store import Settings, Store

    settings = Settings(home=logic_home, master_key=None, workers=2, run_timeout_s=5.0)
    Store.initialize(settings)[0].close()
    service = Service(Store.open(settings), pool=WorkerPool(settings, executor=ROGUE))
    try:
        actor = service.actor()
        service.create_secret(actor, "KEY", "audited-secret-value-0123456789")
        service.deploy_function(
            actor,
            files_from_json(
                {
                    "name": "sly",
                    "secrets": ["KEY"],
                    "source": "def main(event, secrets):\n    return len(secrets.KEY)\n"
                    "# rogue: read-secret-then-deep-json-frame\n",
                }
            ),
        )
        record = service.execute_function(actor, "sly")
        assert record["status"] == "crashed" and record["secrets_accessed"] == ["KEY"]
        assert [a.secret_name for a in service.audit(actor, "KEY")] == ["KEY"]
        assert service.get_secret(actor, "KEY").last_accessed_at is not None
    finally:
        service.close()


def test_frames_padded_beside_short_messages_count_too(rogue):
    # Each frame carries a one-character message and a megabyte of padding: no log or
    # event cap sees it, the per-run frame budget does.
    result = run(rogue, "padded-log-frames", timeout_s=20.0)
    assert result.status == "error"
    assert result.error["message"] == "the run flooded its frames far past the limit and was stopped"
    assert run(rogue, "ok").status == "success"


def test_a_frame_of_huge_integers_is_a_protocol_crash_not_parent_cpu(rogue):
    result = run(rogue, "huge-int-frame", timeout_s=20.0)
    assert result.status == "crashed"
    assert result.error["message"] == "the worker broke the protocol: frame is not valid JSON"
    assert result.duration_ms < 10_000  # refused at once, not at the 20 s deadline


def test_frames_sent_past_done_do_not_answer_the_next_run():
    """A worker that sends its answer and, in the same write, a forged answer for the next
    run: the parent reads both in one recv, and the forged one must not reach the next job."""
    with WorkerPool(make_settings(workers=1), executor=ROGUE) as pool:
        assert run(pool, "done-twice-then-hang").result == "first"
        nxt = run(pool, "fine")
        assert (nxt.status, nxt.result) == ("success", None)
