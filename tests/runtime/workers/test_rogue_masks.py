"""`logic.mask` from a compromised worker: the parent checks every mask frame itself.

A frame the sandbox would refuse (not text, too short, too long, past the count) is a
protocol violation: the run ends "crashed" and the worker is gone; the masks received
before it stay with the run, so what the run wrote is still masked. A mask sent after
"done" never breaks the next run."""

import pytest

from runtime.workers import WorkerPool
from tests.runtime.workers.rogue_mask_executor import VALUE
from tests.runtime.workers.support import make_job, make_settings, no_secrets

ROGUE = "tests.runtime.workers.rogue_mask_executor"


@pytest.fixture(scope="module")
def rogue():
    with WorkerPool(make_settings(workers=2), executor=ROGUE) as pool:
        yield pool


def run(pool, behaviour):
    return pool.run(make_job(behaviour, owner="user:rogue"), no_secrets)


def test_an_honest_mask_reaches_the_parent_once(rogue):
    result = run(rogue, "mask-then-log")
    assert result.status == "success"
    assert result.masks == [VALUE]
    assert result.logs[0]["message"] == "token " + VALUE  # the pool passes it on: the engine masks


@pytest.mark.parametrize(
    "bad, why",
    [
        ("int", "takes str, not int"),
        ("list", "takes str, not list"),
        ("missing", "takes str, not NoneType"),
        ("short", "shorter than 4 characters"),
        ("huge", "the limit is 65,536 bytes"),
    ],
)
def test_a_mask_the_sandbox_would_refuse_is_a_protocol_violation(rogue, bad, why):
    result = run(rogue, f"mask-then-bad:{bad}")
    assert result.status == "crashed"
    assert "protocol" in result.error["message"] and why in result.error["message"]
    assert VALUE not in result.error["message"] and "abc" not in result.error["message"]
    assert result.masks == [VALUE]  # what came before still masks the record
    assert result.logs == []  # the frame after the violation was never read


def test_the_51st_mask_is_a_protocol_violation(rogue):
    result = run(rogue, "mask-too-many")
    assert result.status == "crashed"
    assert "at most 50 values" in result.error["message"]
    assert len(result.masks) == 50


def test_a_mask_after_done_leaves_the_pool_serving(rogue):
    first = run(rogue, "mask-after-done")
    assert first.status == "success" and first.result == "forged" and first.masks == []
    # The frames after the forged "done" can only land in this owner's own later runs, as
    # masks of a value it masks anyway: the parent neither fails nor stops serving.
    for _ in range(3):
        later = run(rogue, "mask-then-log")
        assert later.status == "success", later.error
        assert set(later.masks) <= {VALUE}
    # Another owner never shares the worker: its run is exactly its own.
    other = rogue.run(make_job("mask-then-log", owner="user:other"), no_secrets)
    assert other.status == "success" and other.masks == [VALUE]
    assert [line["message"] for line in other.logs] == ["token " + VALUE]
