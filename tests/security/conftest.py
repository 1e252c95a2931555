"""Sandbox attack helpers: `sandbox_run` compiles and runs source in-process against a RecordingHost."""

import pytest

from runtime.sandbox.testing import Ran, RecordingHost, run_source  # noqa: F401  (re-exported for tests)


@pytest.fixture
def sandbox_run():
    return run_source
