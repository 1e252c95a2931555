"""A restored version is what the next run reads, and the run's access still counts: restore
changes the value, not the secret's usages or its access audit."""

from __future__ import annotations

import hashlib

import pytest

from runtime.manifest import files_from_json
from store import Settings, Store
from tests.conftest import BACKENDS
from tests.support import in_process_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


SOURCE = (
    "import hashlib\n"
    "def main(secrets):\n"
    "    return hashlib.sha256(secrets.API_KEY.encode()).hexdigest()[:12]\n"  # which value, not the value
)


@pytest.fixture
def world(settings: Settings):
    settings = settings.model_copy(update={"workers": 2, "run_timeout_s": 5})
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    yield service, service.actor()
    service.close()


def test_the_next_run_reads_the_restored_value(world):
    def digest(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:12]

    service, actor = world
    service.create_secret(actor, "API_KEY", "first-value-for-runs")
    service.deploy_function(actor, files_from_json({"name": "reader", "source": SOURCE, "secrets": ["API_KEY"]}))
    assert service.execute_function(actor, "reader")["result"] == digest("first-value-for-runs")
    service.update_secret(actor, "API_KEY", "second-value-for-runs")
    assert service.execute_function(actor, "reader")["result"] == digest("second-value-for-runs")
    accessed = service.get_secret(actor, "API_KEY").last_accessed_at

    restored = service.restore_secret(actor, "API_KEY", 1)

    assert restored.last_accessed_at == accessed and restored.logic_functions == ["reader"]
    assert len(service.audit(actor, "API_KEY")) == 2  # the restore is no access
    record = service.execute_function(actor, "reader")
    assert record["status"] == "success" and record["result"] == digest("first-value-for-runs")
    assert len(service.audit(actor, "API_KEY")) == 3
