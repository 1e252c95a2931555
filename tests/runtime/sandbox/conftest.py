"""Helpers for the sandbox tests: compile and run source in-process against a RecordingHost."""

import pytest

from runtime.sandbox.testing import run_source


@pytest.fixture
def run():
    return run_source
