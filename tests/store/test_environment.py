"""Environment variables in the store: the name rule, reserved prefixes, the per-owner limits."""

from __future__ import annotations

import pytest

from store import Store
from store.errors import InvalidInput, NotFound, TooLarge


def test_set_get_list_delete(store: Store):
    env = store.environment
    env.set("user:a", "RETRY_PERIOD", "30")
    env.set("user:a", "RETRY_PERIOD", "60")  # replaces
    assert env.get("user:a", "RETRY_PERIOD").value == "60"
    assert [v.name for v in env.list("user:a")] == ["RETRY_PERIOD"]
    assert env.values("user:b") == {}  # another owner sees nothing
    env.delete("user:a", "RETRY_PERIOD")
    with pytest.raises(NotFound):
        env.get("user:a", "RETRY_PERIOD")
    with pytest.raises(NotFound):
        env.delete("user:a", "RETRY_PERIOD")


@pytest.mark.parametrize(
    "name, match",
    [
        ("", "must not be empty"),
        ("lower", "invalid environment variable name"),
        ("1ABC", "invalid environment variable name"),
        ("A-B", "invalid environment variable name"),
        ("A" * 65, "at most 64"),
        ("LOGIC_HOME", "reserved"),
        ("PARTICLE_DEVICE_ID", "reserved"),
        (None, "must not be empty"),
    ],
)
def test_bad_names_are_refused_and_change_nothing(store: Store, name, match):
    with pytest.raises(InvalidInput, match=match):
        store.environment.set("user:a", name, "x")
    assert store.environment.list("user:a") == []


@pytest.mark.parametrize("value", [None, 5, b"bytes", "\ud800"])
def test_bad_values_are_refused(store: Store, value):
    with pytest.raises(InvalidInput):
        store.environment.set("user:a", "X", value)
    assert store.environment.list("user:a") == []


def test_the_101st_variable_is_refused(store: Store):
    env = store.environment
    for i in range(100):
        env.set("user:a", f"V{i}", "x")
    with pytest.raises(InvalidInput, match="100 environment variables"):
        env.set("user:a", "V100", "x")
    env.set("user:a", "V5", "replaced")  # replacing one is not adding one
    assert len(env.list("user:a")) == 100
    env.set("user:b", "V100", "x")  # the limit is per owner


def test_values_total_at_most_16_kib_per_owner(store: Store):
    env = store.environment
    env.set("user:a", "BIG", "x" * 16_000)
    with pytest.raises(TooLarge, match="16384"):
        env.set("user:a", "MORE", "y" * 385)
    with pytest.raises(TooLarge):
        env.set("user:a", "HUGE", "z" * 16_385)
    assert env.values("user:a") == {"BIG": "x" * 16_000}
    env.set("user:a", "BIG", "x" * 16_384)  # replacing counts the new value only
    env.set("user:b", "MORE", "y" * 385)
