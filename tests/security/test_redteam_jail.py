"""Red team of the worker jail: what an escape from the language layer could still do.

The attacker runs unrestricted Python in a real worker (tests/runtime/workers/rogue_executor.py)
and uses only what the seccomp allowlist lets through. Each test failed against the hole it
names before its fix (runtime/workers/seccomp.py; runtime/workers/pool.py's Binding and
limits.limit_run for the last two):

- AF_UNIX out-of-band data on the IPC socket (sendto/recvfrom with MSG_OOB): a rarely used
  kernel path with a record of use-after-free bugs reached from other sandboxes;
- a run lifting its soft RLIMIT_AS (the job's memory) to the worker's hard limit with
  setrlimit, itself on the allowlist;
- code left behind in a reused worker asking the parent for the secrets of the next run of
  another function of the same owner.
"""

from __future__ import annotations

import pytest

from runtime.workers import WorkerPool, seccomp
from runtime.workers.seccomp import NUMBERS, RET_ALLOW, RET_KILL_PROCESS, evaluate
from tests.runtime.workers.support import make_job, make_settings, no_secrets

ROGUE = "tests.runtime.workers.rogue_executor"
KILLED = ("crashed", "the worker made a forbidden system call and was killed (seccomp, SIGSYS)")
MEMORY = ("memory_exceeded", "the run exceeded its memory limit")
MSG_OOB, MSG_DONTWAIT, MSG_PEEK = 0x1, 0x40, 0x2


def attempt(pool: WorkerPool, probe: str, arg: object = "", owner: str = "user:attacker", memory_mb: int = 128):
    result = pool.run(make_job(f"jail:{probe}:{arg}", owner=owner, timeout_s=5.0, memory_mb=memory_mb), no_secrets)
    if result.status != "success":
        return result.status, result.error["message"]
    ((kind, value),) = result.result.items()
    return kind, value


def assert_healthy(pool: WorkerPool) -> None:
    for owner in ("user:bystander", "user:attacker"):
        assert pool.run(make_job("fine", owner=owner), no_secrets).status == "success"


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(make_settings(worker_memory_mb=512), executor=ROGUE) as pool:
        yield pool


# -- MSG_OOB ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["on", "log"])
def test_the_filter_kills_out_of_band_data_and_allows_every_other_ipc_flag(mode):
    prog = seccomp.program(mode)
    for call in ("sendto", "recvfrom"):
        nr = NUMBERS[call]
        assert evaluate(prog, nr, args=(3, 0, 1, 0)) == RET_ALLOW, call
        assert evaluate(prog, nr, args=(3, 0, 1, MSG_DONTWAIT | MSG_PEEK)) == RET_ALLOW, call
        assert evaluate(prog, nr, args=(3, 0, 1, MSG_OOB)) == RET_KILL_PROCESS, call
        assert evaluate(prog, nr, args=(3, 0, 1, MSG_OOB | MSG_DONTWAIT)) == RET_KILL_PROCESS, call
    # the check loads an argument: the rules after it still see the call's number
    assert evaluate(prog, NUMBERS["write"], args=(3, 0, 1, MSG_OOB)) == RET_ALLOW
    assert evaluate(prog, NUMBERS["execve"], args=(3, 0, 1, 0)) == RET_KILL_PROCESS


def test_a_worker_sending_out_of_band_data_is_killed_and_the_pool_carries_on(pool):
    if pool.layers.seccomp != "on":
        pytest.skip(f"no seccomp filter here: {pool.layers.summary()}")
    assert attempt(pool, "oob") == KILLED
    assert_healthy(pool)


# -- the job's memory limit ---------------------------------------------------------------------


def test_a_run_cannot_lift_its_memory_limit_to_the_workers(pool):
    # A job of 128 MiB in a pool whose workers may have 512: the 300 MiB it asks for after
    # raising its soft limit to the hard one used to be granted.
    assert attempt(pool, "raise-memory-to-hard", 300, memory_mb=128) == MEMORY
    assert attempt(pool, "allocate", 64, memory_mb=128) == ("ok", 64 << 20)  # its own limit still works
    # A job that declares 512 MiB gets them (another worker: the hard limit never goes up).
    assert attempt(pool, "raise-memory-to-hard", 300, memory_mb=512) == ("ok", 300 << 20)
    assert attempt(pool, "allocate", 200, memory_mb=128) == MEMORY
    assert_healthy(pool)


# -- a worker reused across functions -----------------------------------------------------------


def test_code_left_in_a_worker_never_sees_another_functions_secrets(pool):
    owner = "user:tenant"
    planted = pool.run(make_job("jail:plant:", owner=owner, version_key="fn-rogue:1", timeout_s=5.0), no_secrets)
    assert planted.status == "success" and planted.result == {"ok": "planted"}

    def broker(name: str) -> str:
        assert name == "PAYMENT_KEY"
        return "sk-live-of-the-billing-function"

    # The same owner's other function, which declared the secret (it does not even read it).
    other = pool.run(make_job("fine", owner=owner, version_key="fn-billing:1", secrets=("PAYMENT_KEY",)), broker)
    assert other.status == "success"
    loot = pool.run(make_job("jail:loot:", owner=owner, version_key="fn-rogue-2:1", timeout_s=5.0), no_secrets)
    assert loot.worker_pid == planted.worker_pid  # the planted worker: no secrets either
    assert loot.status == "success" and loot.result == {"ok": []}, loot.result
    assert other.worker_pid != planted.worker_pid
    # Runs of the same function (same secrets, same memory) still share a warm worker.
    again = pool.run(make_job("fine", owner=owner, version_key="fn-billing:1", secrets=("PAYMENT_KEY",)), broker)
    assert again.worker_pid == other.worker_pid
    assert_healthy(pool)
