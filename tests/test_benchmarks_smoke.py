"""`python -m benchmarks --quick` runs and writes valid JSON (no timing assertions: figures are not tests)."""

from __future__ import annotations

from tests.support import quick_benchmarks

WORKLOADS = {
    "warm",
    "cold",
    "compute",
    "secrets",
    "redaction",
    "ingest",
    "memory",
    "noisy",
    "console",
    "streams",
    "jail",
}


def test_quick_benchmarks_write_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    scratch = tmp_path / "tmp"  # the benchmarks' own temporary homes go here, and only theirs
    scratch.mkdir()
    # scale and claims start PostgreSQL clusters: tests/test_benchmarks_scale_smoke.py
    # ("memory" is a section of the ingest workload, measured on its server)
    data = quick_benchmarks(",".join(sorted(WORKLOADS - {"memory"})), out, scratch, timeout=200)
    assert data["mode"] == "quick"
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"]
    assert set(data["workloads"]) == WORKLOADS
    for key, workload in data["workloads"].items():
        assert workload["errors"] == [], (key, workload["errors"])
        assert workload["figures"], key
        for name, figure in workload["figures"].items():
            assert {"unit", "p50", "p99", "n"} <= set(figure), (key, name)
        for name, ratio in workload["ratios"].items():
            assert {"value", "meaning"} <= set(ratio), (key, name)
    assert {"warm", "cold", "compute", "secrets", "redaction", "ingest", "noisy", "console", "jail"} <= {
        t["workload"] for t in data["targets"]
    }
    ingest = data["workloads"]["ingest"]
    assert ingest["figures"]["bare_healthz_per_s"]["p50"] > 0  # the bare ASGI peer ran beside /healthz
    assert ingest["ratios"]["healthz_over_bare"]["value"] > 0
    for target in data["targets"]:
        assert target["met"] in (True, False, None)
    assert list(scratch.glob("logic-bench-*")) == []  # every temporary home removed
