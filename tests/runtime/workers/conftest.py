import pytest

from _workers_support import EXECUTOR, make_settings
from runtime.workers import WorkerPool


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(make_settings(), diagnostics=True, executor=EXECUTOR) as pool:
        yield pool
