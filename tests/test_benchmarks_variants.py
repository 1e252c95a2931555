"""BENCH_INGEST_VARIANTS: servers of this tree with other settings, side by side."""

from __future__ import annotations

import pytest

from benchmarks.harness import env_variants
from benchmarks.ingest import VARIANTS, Variant, _variants


def test_variants_name_their_settings(monkeypatch):
    monkeypatch.setenv(VARIANTS, "one:LOGIC_DELIVERY_THREADS=1, nospin:LOGIC_WORKER_SPIN_US=0;LOGIC_WORKERS=2")
    assert env_variants(VARIANTS) == [
        ("one", {"LOGIC_DELIVERY_THREADS": "1"}),
        ("nospin", {"LOGIC_WORKER_SPIN_US": "0", "LOGIC_WORKERS": "2"}),
    ]


def test_unset_means_none(monkeypatch):
    monkeypatch.delenv(VARIANTS, raising=False)
    assert env_variants(VARIANTS) == []


@pytest.mark.parametrize(
    "text",
    [
        "LOGIC_DELIVERY_THREADS=1",  # no label
        "one:",  # no setting
        "one:LOGIC_DELIVERY_THREADS",  # no value
        "../up:LOGIC_WORKERS=1",  # a label is a folder name: a plain identifier only
        "current:LOGIC_WORKERS=1",  # this tree's own server
        "a:LOGIC_WORKERS=1,a:LOGIC_WORKERS=2",  # twice
    ],
)
def test_a_malformed_variant_is_refused_before_any_server_starts(monkeypatch, text, tmp_path):
    monkeypatch.setenv(VARIANTS, text)
    with pytest.raises(RuntimeError, match=VARIANTS):
        _variants(tmp_path)
    assert not any(tmp_path.iterdir())


def test_each_variant_server_runs_this_tree_with_its_settings(monkeypatch, tmp_path):
    monkeypatch.setenv(VARIANTS, "one:LOGIC_DELIVERY_THREADS=1")
    monkeypatch.setenv("LOGIC_DELIVERY_THREADS", "7")  # the caller's own settings reach no server
    current, one = _variants(tmp_path)
    assert isinstance(one, Variant) and one.label == "one" and one.server.code is None
    assert one.server.env["LOGIC_DELIVERY_THREADS"] == "1"
    assert "LOGIC_DELIVERY_THREADS" not in current.server.env
    assert one.server.home != current.server.home
