"""Helpers for the sandbox tests: compile and run source in-process against a RecordingHost."""

import pytest

from runtime.sandbox.testing import Ran, RecordingHost, run_source  # noqa: F401  (re-exported for tests)


@pytest.fixture
def run():
    return run_source
