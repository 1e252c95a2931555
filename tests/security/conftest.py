"""Sandbox attack helpers: `sandbox_run` compiles and runs source in-process against a RecordingHost."""

import pytest

from runtime.sandbox.testing import run_source


@pytest.fixture
def sandbox_run():
    return run_source
