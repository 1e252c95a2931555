"""Helpers shared by test modules (fixtures live in conftest.py files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.service import Service
from store import Settings, Store


def runtime_service(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides) -> Service:
    """An initialized home and a Service with workers, for a module-scoped fixture.

    Module fixtures run before the per-test environment clean-up, so LOGIC_* variables of
    the calling shell are ignored here explicitly.
    """
    with pytest.MonkeyPatch.context() as mp:
        for variable in list(os.environ):
            if variable.startswith("LOGIC_"):
                mp.delenv(variable)
        settings = Settings(home=Path(tmp_path_factory.mktemp(name)) / "home", **overrides)
    Store.initialize(settings)[0].close()
    return Service.open(settings, runtime=True)
