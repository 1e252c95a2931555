"""The line `logic serve` prints about the worker's layers, and its round trip through the zygote's hello."""

from __future__ import annotations

from runtime.workers.layers import Layers

FULL = Layers(
    seccomp="on",
    namespaces=("mount", "pid", "ipc", "uts", "net"),
    uid=True,
    cgroups=("memory", "pids", "cpu"),
)


def test_every_layer_on():
    assert FULL.summary() == (
        "isolation: seccomp, mount+pid+ipc+uts+net namespaces, uid, cgroups (memory, pids, cpu), rlimits"
    )
    assert FULL.complete


def test_what_is_missing_is_named_with_its_reason():
    layers = Layers(
        seccomp="on",
        namespaces=("ipc", "uts", "net"),
        uid=True,
        missing={"mount namespace": "building the read-only root failed: EPERM", "cgroups": "not writable"},
    )
    assert layers.summary() == (
        "isolation: seccomp, ipc+uts+net namespaces, uid, rlimits; "
        "missing: mount namespace (building the read-only root failed: EPERM); cgroups (not writable)"
    )
    assert not layers.complete
    assert Layers(seccomp="log").summary() == "isolation: seccomp (log only), rlimits"
    assert Layers().summary() == "isolation: rlimits"


def test_the_hello_round_trip_keeps_everything():
    layers = Layers(seccomp="on", namespaces=("net",), missing={"uid": "why"})
    assert Layers.from_json(layers.to_json()) == layers
    assert Layers.from_json(FULL.to_json()) == FULL
    assert Layers.from_json({}) == Layers()
