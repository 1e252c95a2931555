import runtime.workers


def test_public_surface():
    assert sorted(runtime.workers.__all__) == ["Job", "Pool", "WorkerPool", "WorkerResult", "WorkerUnavailable"]
    for name in ("Job", "Pool", "WorkerPool", "WorkerResult"):
        assert getattr(runtime.workers, name).__module__.startswith("runtime.workers.")
    # The error lives with every other error, in the one tree of store/errors.py.
    assert runtime.workers.WorkerUnavailable.__module__ == "store.errors"


def test_worker_unavailable_is_a_logic_error_with_a_status():
    from store.errors import LogicError

    assert issubclass(runtime.workers.WorkerUnavailable, LogicError)
    assert runtime.workers.WorkerUnavailable.status == 503
