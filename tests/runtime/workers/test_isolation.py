"""The OS confinement of a worker, checked from inside it (Security promise 3).

Uses the test-only "diagnose" op (pool built with diagnostics=True)."""

import os
import resource
import socket

import pytest

from runtime.workers import WorkerPool
from tests.runtime.workers.support import EXECUTOR, IS_ROOT, OK_SOURCE, make_job, make_settings, no_secrets

MB = 1024 * 1024


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def test_rlimits_are_set(pool):
    facts = pool.diagnose("user:limits")
    limits = facts["rlimits"]
    assert limits["RLIMIT_AS"] == [128 * MB, 128 * MB]
    assert limits["RLIMIT_FSIZE"] == [0, 0]
    assert limits["RLIMIT_NOFILE"] == [16, 16]
    assert limits["RLIMIT_NPROC"] == [0, 0]
    assert limits["RLIMIT_CORE"] == [0, 0]


def test_cpu_and_memory_limits_follow_the_run(pool):
    owner = "user:perrun"
    pool.run(make_job(OK_SOURCE, owner=owner, timeout_s=2.0, memory_mb=64), no_secrets)
    limits = pool.diagnose(owner)["rlimits"]
    assert limits["RLIMIT_AS"] == [64 * MB, 128 * MB]
    soft_cpu, hard_cpu = limits["RLIMIT_CPU"]
    assert 3 <= soft_cpu <= 5  # usage (<1 s, rounded up) + ceil(2) + 1
    assert hard_cpu == resource.RLIM_INFINITY


def test_only_the_ipc_socket_is_open(pool):
    fds = pool.diagnose("user:fds")["fds"]
    assert fds["0"] == fds["1"] == fds["2"] == "/dev/null"
    assert fds["3"].startswith("socket:")
    assert set(fds) == {"0", "1", "2", "3"}


def test_environment_is_empty(pool, monkeypatch):
    monkeypatch.setenv("LOGIC_MASTER_KEY", "must-not-leak")
    assert pool.diagnose("user:env")["environ"] == {}


def test_a_file_cannot_grow(pool, tmp_path):
    target = tmp_path / "out"
    os.chmod(tmp_path, 0o777)
    assert pool.diagnose("user:files", try_write=str(target))["write"].startswith("error")


def test_root_isolates_when_the_host_allows(pool):
    if not IS_ROOT:
        assert pool.isolated is False
    elif not pool.isolated:
        pytest.skip("root, but this host refuses a network namespace or a uid change (no CAP_SYS_ADMIN?)")


@pytest.mark.skipif(not IS_ROOT, reason="the root-only isolation path")
def test_root_path_drops_uid_network_and_fork(pool, listener):
    if not pool.isolated:
        pytest.skip("this host refuses the isolation")
    facts = pool.diagnose("user:root-path", connect_port=listener, try_fork=True, try_setuid0=True)
    assert facts["uid"] != 0 and facts["euid"] != 0 and facts["gid"] != 0
    assert facts["groups"] == []
    assert facts["connect"].startswith("error")  # a private, empty network namespace
    assert facts["fork"].startswith("error")  # RLIMIT_NPROC bites once not root
    assert facts["setuid0"].startswith("error")


@pytest.mark.skipif(not IS_ROOT, reason="the root-only isolation path")
def test_each_worker_has_its_own_uid(pool):
    if not pool.isolated:
        pytest.skip("this host refuses the isolation")
    first = pool.diagnose("user:uid-a")
    second = pool.diagnose("user:uid-b")
    assert first["uid"] != second["uid"]


@pytest.mark.skipif(not IS_ROOT, reason="the root-only isolation path")
def test_other_workers_cannot_be_signalled(pool):
    if not pool.isolated:
        pytest.skip("this host refuses the isolation")
    # Workers have distinct uids: a compromised worker cannot kill another tenant's.
    victim = pool.diagnose("user:victim")
    attacker = pool.diagnose("user:attacker")
    assert victim["uid"] != attacker["uid"]


def test_non_root_path_works_with_isolation_off(listener):
    """Without root there is no netns and no uid change: only rlimits and the sandbox."""
    with WorkerPool(make_settings(), isolate=False, diagnostics=True, executor=EXECUTOR) as pool:
        assert pool.isolated is False
        result = pool.run(make_job(OK_SOURCE), no_secrets)
        assert result.status == "success"
        facts = pool.diagnose("user:alice", connect_port=listener)
        assert facts["uid"] == os.getuid()
        assert facts["connect"] == "ok"  # documented: the host network stays reachable
        assert facts["rlimits"]["RLIMIT_FSIZE"] == [0, 0]
        assert facts["rlimits"]["RLIMIT_NOFILE"] == [16, 16]
        assert facts["environ"] == {}
        assert set(facts["fds"]) == {"0", "1", "2", "3"}


def test_isolation_needs_root():
    if IS_ROOT:
        pytest.skip("only meaningful when not root")
    with pytest.raises(ValueError):
        WorkerPool(make_settings(), isolate=True, executor=EXECUTOR)


def test_diagnostics_are_off_by_default():
    with WorkerPool(make_settings(), executor=EXECUTOR) as pool, pytest.raises(RuntimeError):
        pool.diagnose("user:alice")


STDLIB_SOURCE = """import datetime, statistics, uuid, decimal, fractions, hashlib, hmac, re, base64, zlib, time
def main(event):
    out = [len("x".encode(enc)) for enc in ["utf-16", "cp1252", "koi8_r", "idna", "shift_jis", "gb18030", "big5"]]
    out.append(datetime.datetime(2024, 1, 1).strftime("%A"))
    out.append(time.strftime("%Y", time.gmtime(0)))
    out.append(statistics.stdev([1.0, 2.0, 3.5]) > 0)
    out.append(len(str(uuid.uuid4())))
    out.append(hashlib.new("blake2b", b"x").hexdigest()[:4])
    out.append(hmac.new(b"k", b"m", "sha256").hexdigest()[:4])
    out.append(str(decimal.Decimal("1.1") + 1))
    out.append(str(fractions.Fraction(1, 3) * 3))
    out.append(base64.b85encode(b"xyz").decode())
    out.append(bool(re.match(r"\\w+", "h\\u00e9llo")))
    out.append(len(zlib.compress(b"x" * 100)) > 0)
    return out
"""


def test_stdlib_works_under_the_worker_uid(pool):
    # Lazy imports (codecs above all) would read the standard library from
    # disk, which a worker's own uid may not be allowed to: the zygote
    # imports them before forking.
    result = pool.run(make_job(STDLIB_SOURCE, owner="user:stdlib"), no_secrets)
    assert result.status == "success", result.error
    assert result.result[:7] == [4, 1, 1, 1, 1, 1, 1]
    assert result.result[7] == "Monday"
