"""Replay every collected test-function source and every example in real, fully jailed workers.

    JAIL_SOURCES=/tmp/sources.json .venv/bin/python docs/research/worker-jail-trace/replay.py

Prints how many runs ended in each status, and the sources whose run crashed (a crash
here would be the filter refusing something an honest function needs).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from runtime.sandbox.testing import default_limits  # noqa: E402
from runtime.workers import Job, WorkerPool  # noqa: E402
from store.settings import Settings  # noqa: E402


def job(i: int, source: str, entry: str, declared: list[str]) -> Job:
    context = {
        "event": {
            "id": "e",
            "name": "sensor",
            "data": '{"i": 7}',
            "published_at": "2024-01-01T00:00:00Z",
            "source": "t",
        },
        "scheduled": None,
        "trigger": {"type": "event", "triggered_at": "2024-01-01T00:00:00Z", "event_id": "e"},
        "function_info": {"id": f"f{i}", "name": "f", "version": 1, "owner": "user:replay"},
    }
    return Job(
        owner=f"user:replay{i % 3}",
        version_key=f"f{i}:1",
        source=source,
        filename="replay.py",
        entry=entry,
        declared_secrets=tuple(declared),
        context=context,
        timeout_s=5.0,
        memory_mb=256,
        limits=default_limits(),
    )


def main() -> None:
    items = json.loads(Path(os.environ["JAIL_SOURCES"]).read_text())
    for path in sorted((ROOT / "logic_examples").glob("*/*.py")):
        manifest = path.with_suffix(".logic.json")
        meta = json.loads(manifest.read_text()) if manifest.exists() else {}
        items.append(
            {"source": path.read_text(), "entry": meta.get("entry", "main"), "declared": meta.get("secrets", [])}
        )
    statuses: collections.Counter = collections.Counter()
    crashed = []
    with WorkerPool(Settings(workers=2, worker_memory_mb=256, run_timeout_s=5.0)) as pool:
        print(pool.layers.summary())
        for i, item in enumerate(items):
            result = pool.run(
                job(i, textwrap.dedent(item["source"]), item["entry"], item["declared"]), lambda n: "s3cr3t-value"
            )
            statuses[result.status] += 1
            if result.status == "crashed":
                crashed.append((item["source"][:200], result.error))
    print(f"{len(items)} sources: {dict(statuses)}")
    for source, error in crashed:
        print("CRASHED:", error, "\n", source)


if __name__ == "__main__":
    main()
