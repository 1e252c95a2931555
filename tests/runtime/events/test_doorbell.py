"""The delivery threads' doorbell: one ring wakes one thread, and no ring is lost."""

import threading
import time

from runtime.events.doorbell import Doorbell


def _waiters(bell: Doorbell, n: int, timeout: float) -> tuple[list[threading.Thread], list[bool]]:
    woke: list[bool] = []
    threads = [threading.Thread(target=lambda: woke.append(bell.wait(timeout))) for _ in range(n)]
    for t in threads:
        t.start()
    # Until all n wait on the bell's condition (its own list of waiters), bounded: no sleep guessed.
    deadline = time.monotonic() + 10
    while len(bell._cond._waiters) < n:
        assert time.monotonic() < deadline, "the threads did not start waiting"
        time.sleep(0.001)
    return threads, woke


def test_one_ring_wakes_one_of_four_waiting_threads():
    bell = Doorbell(cap=4)
    threads, woke = _waiters(bell, 4, timeout=1.0)
    bell.ring()
    for t in threads:
        t.join(10)
    assert sorted(woke) == [False, False, False, True]


def test_a_ring_while_nobody_waits_is_kept_up_to_the_cap():
    bell = Doorbell(cap=2)
    bell.ring(5)  # every thread busy: the rings wait for them, but only as many as threads
    assert bell.wait(0) and bell.wait(0)
    assert bell.wait(0.01) is False


def test_ring_all_wakes_every_waiter_and_nothing_rings_by_itself():
    bell = Doorbell(cap=3)
    assert bell.wait(0.01) is False
    bell.ring(0)
    assert bell.wait(0.01) is False
    threads, woke = _waiters(bell, 3, timeout=60)
    bell.ring_all()
    for t in threads:
        t.join(20)  # a third of their timeout: whoever is back came back for the ring, not the time
    assert not any(t.is_alive() for t in threads)
    assert woke == [True, True, True]
