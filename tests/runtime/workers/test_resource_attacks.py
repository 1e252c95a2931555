"""Every resource-exhaustion attack of tests/security/attacks_resource.py, run
through real workers: each ends with its own status, and the pool carries on
(Security promise 4). The attacks run concurrently, to keep the suite fast."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.workers import WorkerPool
from tests.runtime.workers.support import EXECUTOR, OK_SOURCE, make_job, make_settings, no_secrets
from tests.security.attacks_resource import RESOURCE_ATTACKS

ENDINGS = {"timeout", "memory_exceeded", "error"}
CONCURRENCY = 4


def _load_attacks() -> list[tuple[str, str, tuple[str, ...]]]:
    """(id, source, expected statuses); a bare (id, source) expects ENDINGS."""
    attacks = []
    for item in RESOURCE_ATTACKS:
        attack_id, source, *expected = item
        attacks.append((attack_id, source, tuple(expected[0]) if expected else tuple(ENDINGS)))
    return attacks


ATTACKS = _load_attacks()
EXPECTED = {attack_id: expected for attack_id, _source, expected in ATTACKS}


@pytest.fixture(scope="module")
def outcomes():
    settings = make_settings(workers=CONCURRENCY, worker_memory_mb=128)
    with WorkerPool(settings, executor=EXECUTOR) as pool:

        def attack(item):
            attack_id, source, _expected = item
            job = make_job(source, owner=f"user:attacker-{attack_id}", timeout_s=1.0, memory_mb=128)
            result = pool.run(job, lambda name: "secret-value")
            after = pool.run(make_job(OK_SOURCE, owner=f"user:attacker-{attack_id}"), no_secrets)
            return attack_id, (result, after)

        with ThreadPoolExecutor(CONCURRENCY) as executor:
            results = dict(executor.map(attack, ATTACKS))
        healthy = pool.run(make_job(OK_SOURCE, owner="user:bystander"), no_secrets)
        yield results, healthy


@pytest.mark.parametrize("attack_id", list(EXPECTED))
def test_attack_ends_with_its_own_status(outcomes, attack_id):
    results, healthy = outcomes
    result, after = results[attack_id]
    # Promise 4: the run ends with its own status, the one the list expects.
    assert result.status in EXPECTED[attack_id], (result.status, result.error)
    assert result.duration_ms < 5000
    assert after.status == "success", after.error  # the owner's next run works
    assert healthy.status == "success"  # and so do everyone else's
