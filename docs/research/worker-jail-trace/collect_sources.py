"""pytest plugin: record every function source the sandbox tests compile, to replay them in real workers.

    .venv/bin/python -m pytest -p docs.research.worker-jail-trace... (loaded by path, see README.md here)

Writes the sources (with their entry point and declared secrets) as JSON to $JAIL_SOURCES.
"""

from __future__ import annotations

import json
import os

import runtime.sandbox.testing as testing

_seen: dict[str, dict] = {}
_original = testing.compile_source


def _recording(source, *args, **kwargs):
    entry = kwargs.get("entry", "main")
    declared = list(kwargs.get("declared_secrets", ()))
    if isinstance(source, str):
        _seen.setdefault(source, {"source": source, "entry": entry, "declared": declared})
    return _original(source, *args, **kwargs)


testing.compile_source = _recording


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["JAIL_SOURCES"], "w") as handle:
        json.dump(list(_seen.values()), handle)
