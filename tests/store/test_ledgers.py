"""Ledgers in the store: names, the 16 KiB limit on every write, versions, merge against the row."""

from __future__ import annotations

import pytest

from store import Store
from store.errors import Conflict, InvalidInput, NotFound, TooLarge


def test_create_write_versions(store: Store):
    ledgers = store.ledgers
    created = ledgers.create("user:a", "counters", "per-sensor counts")
    assert (created.updated_at, created.data) == (None, {})
    with pytest.raises(Conflict):
        ledgers.create("user:a", "counters")
    ledgers.create("user:b", "counters")  # unique per owner
    record, change = ledgers.write("user:a", "counters", "replace", {"a": 1, "b": 2})
    assert record.data == {"a": 1, "b": 2} and change.change_type == "set"
    assert ledgers.versions("user:a", "counters") == []  # an empty ledger replaced nothing
    record, _ = ledgers.write("user:a", "counters", "merge", {"b": 3, "c": [1]})
    assert record.data == {"a": 1, "b": 3, "c": [1]}
    record, change = ledgers.write("user:a", "counters", "delete")
    assert (record.updated_at, record.data, change.change_type) == (None, {}, "delete")
    versions = ledgers.versions("user:a", "counters")
    assert [v["size_bytes"] for v in versions] == [len('{"a":1,"b":3,"c":[1]}'), len('{"a":1,"b":2}')]
    assert ledgers.version("user:a", "counters", versions[-1]["version"])["data"] == {"a": 1, "b": 2}
    assert ledgers.get("user:b", "counters").data == {}  # the other owner's is untouched


def test_only_the_last_versions_are_kept(settings):
    settings = settings.model_copy(update={"ledger_versions_kept": 3})
    store, _ = Store.initialize(settings)
    try:
        store.ledgers.create("user:a", "l")
        for i in range(10):
            store.ledgers.write("user:a", "l", "replace", {"i": i})
        assert [v["size_bytes"] for v in store.ledgers.versions("user:a", "l")] == [7, 7, 7]
        assert [
            store.ledgers.version("user:a", "l", v["version"])["data"]["i"]
            for v in store.ledgers.versions("user:a", "l")
        ] == [8, 7, 6]
    finally:
        store.close()


@pytest.mark.parametrize("name", ["", "Upper", "under_score", "a" * 33, "sp ace", "dot.ted", None, "é"])
def test_bad_names_are_refused(store: Store, name):
    with pytest.raises(InvalidInput):
        store.ledgers.create("user:a", name)
    assert store.ledgers.list("user:a") == []


@pytest.mark.parametrize(
    "data",
    [[1], "text", None, {"n": float("nan")}, {"n": float("inf")}, {1: "int key"}, {"s": {1, 2}}, {"b": b"x"}],
)
def test_bad_data_is_refused_and_changes_nothing(store: Store, data):
    store.ledgers.create("user:a", "l")
    store.ledgers.write("user:a", "l", "replace", {"keep": True})
    with pytest.raises(InvalidInput):
        store.ledgers.write("user:a", "l", "replace", data)
    assert store.ledgers.get("user:a", "l").data == {"keep": True}
    assert store.ledgers.versions("user:a", "l") == []


def test_deep_nesting_is_refused(store: Store):
    store.ledgers.create("user:a", "l")
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidInput, match="nested"):
        store.ledgers.write("user:a", "l", "replace", deep)


def test_oversized_writes_are_refused_and_change_nothing(store: Store):
    store.ledgers.create("user:a", "l")
    store.ledgers.write("user:a", "l", "replace", {"a": "x" * 10_000})
    with pytest.raises(TooLarge, match="16384"):
        store.ledgers.write("user:a", "l", "replace", {"a": "x" * 16_384})
    with pytest.raises(TooLarge):  # each patch fits; the merged result does not
        store.ledgers.write("user:a", "l", "merge", {"b": "y" * 7_000})
    assert store.ledgers.get("user:a", "l").data == {"a": "x" * 10_000}
    assert store.ledgers.versions("user:a", "l") == []


def test_unknown_ledger_and_mode(store: Store):
    with pytest.raises(NotFound):
        store.ledgers.write("user:a", "nope", "replace", {})
    store.ledgers.create("user:a", "l")
    with pytest.raises(InvalidInput, match="mode"):
        store.ledgers.write("user:a", "l", "append", {})  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        store.ledgers.version("user:a", "l", 1)


def test_archive_removes_data_and_versions(store: Store):
    store.ledgers.create("user:a", "l")
    store.ledgers.write("user:a", "l", "replace", {"a": 1})
    store.ledgers.write("user:a", "l", "replace", {"a": 2})
    store.ledgers.archive("user:a", "l")
    with pytest.raises(NotFound):
        store.ledgers.get("user:a", "l")
    with pytest.raises(NotFound):
        store.ledgers.archive("user:a", "l")
    store.ledgers.create("user:a", "l")
    assert store.ledgers.versions("user:a", "l") == []
