"""`python -m benchmarks --quick --only scale,claims` runs and writes its figures (no timing
assertions: figures are not tests). With PostgreSQL installed both report their PostgreSQL
figures; without it, scale is a note and claims reports SQLite's half. Claims compares this
tree with a baseline tree named in BENCH_CLAIMS_BASELINES: here, this tree again."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.pg_cluster import pg_bin
from tests.support import quick_benchmarks

ROOT = Path(__file__).resolve().parents[1]


def test_quick_scale_and_claims_write_their_figures(tmp_path):
    out = tmp_path / "bench.json"
    # The benchmarks' temporary homes and clusters go here, and only theirs. Not under
    # tmp_path: PostgreSQL runs as the postgres user, who cannot enter pytest's 0700 folders.
    scratch = Path(tempfile.mkdtemp(prefix="logic-scale-smoke-", dir="/tmp"))
    scratch.chmod(0o755)
    try:
        data = quick_benchmarks("scale,claims", out, scratch, timeout=300, BENCH_CLAIMS_BASELINES=f"again={ROOT}")
        leftovers = sorted(p.name for p in scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert leftovers == []  # every temporary home and cluster removed
    assert set(data["workloads"]) == {"scale", "claims"}
    scale, claims = data["workloads"]["scale"], data["workloads"]["claims"]
    assert scale["errors"] == [] and claims["errors"] == [], (scale["errors"], claims["errors"])
    assert claims["figures"]["sqlite_claims_per_s"]["p50"] > 0
    if pg_bin() is None:
        assert any("PostgreSQL is not installed" in note for note in scale["notes"])
        assert scale["figures"] == {}
        return
    assert claims["figures"]["postgresql_claims_per_s"]["p50"] > 0
    assert claims["ratios"]["postgresql_vs_sqlite"]["value"] > 0
    assert claims["figures"]["postgresql_again_claims_per_s"]["p50"] > 0  # its rounds ran in a process of its own
    assert claims["ratios"]["postgresql_vs_again"]["value"] > 0
    for n in (1, 2):
        assert scale["figures"][f"t_{n}"]["p50"] > 0
        assert scale["figures"][f"pg_cpu_ms_{n}"]["p50"] > 0
        assert scale["figures"][f"node_cpu_ms_{n}"]["p50"] > 0
    assert scale["ratios"]["scaling_2"]["value"] > 0
    assert {t["name"] for t in data["targets"] if t["workload"] == "scale"} >= {"scaling_2"}
