import pytest

from runtime.workers import WorkerPool
from tests.runtime.workers.support import EXECUTOR, make_settings


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(make_settings(), diagnostics=True, executor=EXECUTOR) as pool:
        yield pool
