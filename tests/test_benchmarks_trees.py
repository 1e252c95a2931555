"""benchmarks/trees.py: a baseline tree's warm run happens in a process of that tree's code."""

from __future__ import annotations

import shutil

import pytest

from benchmarks.trees import TreeRunner, turn_about
from benchmarks.warm import ROOT, SOURCE
from tests.support import quick_benchmarks


def _copy_of_this_tree(dest, lab_suffix: str):
    for part in ("runtime", "store", "benchmarks"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    with open(dest / "benchmarks" / "lab.py", "a") as lab:
        lab.write(lab_suffix)
    return dest


def test_each_tree_runs_in_its_own_process_with_its_own_code(tmp_path, monkeypatch):
    mark = tmp_path / "imported-from"
    monkeypatch.setenv("BENCH_TREES_MARK", str(mark))
    tree = _copy_of_this_tree(
        tmp_path / "base", "\nimport os as _os\nopen(_os.environ['BENCH_TREES_MARK'], 'w').write(__file__)\n"
    )
    runners = [TreeRunner("this", ROOT, SOURCE), TreeRunner("base", tree, SOURCE)]
    try:
        samples = turn_about(runners, rounds=3, n=4)
    finally:
        for runner in runners:
            runner.close()
    assert mark.read_text() == str(tree / "benchmarks" / "lab.py")  # the baseline's Lab, not ours
    assert set(samples) == {"this", "base"}
    for rounds in samples.values():
        assert [len(r) for r in rounds] == [4, 4, 4]
        assert all(t > 0 for r in rounds for t in r)


def test_a_tree_whose_warm_run_cannot_start_is_named(tmp_path):
    tree = _copy_of_this_tree(tmp_path / "broken", "\nraise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match=r"tree broken .* exited \(code 3\)"):
        TreeRunner("broken", tree, SOURCE)


def test_the_warm_workload_reports_each_baseline_beside_this_tree(tmp_path):
    out = tmp_path / "bench.json"
    scratch = tmp_path / "tmp"  # every tree's temporary homes go here, and only theirs
    scratch.mkdir()
    data = quick_benchmarks("warm", out, scratch, timeout=200, BENCH_WARM_BASELINES=f"again={ROOT}")
    warm = data["workloads"]["warm"]
    assert warm["errors"] == []
    figures = warm["figures"]
    assert figures["side_by_side_this"]["n"] == figures["side_by_side_again"]["n"] == 400  # 4 rounds of 100
    assert figures["this_vs_again"]["n"] == 4  # one ratio per round
    assert figures["this_vs_again"]["p50"] > 0
    assert list(scratch.glob("logic-bench-*")) == []  # each tree's process removed its home
