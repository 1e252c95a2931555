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
    assert limits["RLIMIT_AS"] == [64 * MB, 64 * MB]  # hard too: escaped code cannot raise it
    soft_cpu, hard_cpu = limits["RLIMIT_CPU"]
    assert 3 <= soft_cpu <= 5  # usage (<1 s, rounded up) + ceil(2) + 1
    assert hard_cpu == resource.RLIM_INFINITY


def _host_view_of_fds(pid: int) -> dict[str, str]:
    """A worker's open descriptors as the host's /proc shows them (inside, the seccomp filter
    refuses even fstat)."""
    return {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def test_only_the_ipc_socket_is_open(pool):
    fds = _host_view_of_fds(pool.diagnose("user:fds")["worker_pid"])
    assert fds["0"] == fds["1"] == fds["2"] == "/dev/null"
    assert fds["3"].startswith("socket:")
    assert set(fds) == {"0", "1", "2", "3"}


def test_from_inside_the_filter_shows_nothing_of_the_descriptors(pool):
    assert pool.diagnose("user:fds-inside")["fds"] == {}  # fstat: EPERM


def test_without_the_filter_the_worker_sees_the_same_descriptors():
    with WorkerPool(make_settings(worker_seccomp="off"), diagnostics=True, executor=EXECUTOR) as pool:
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


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.split(":\t", 1) for line in handle.read().splitlines() if ":\t" in line)


def test_every_worker_runs_under_the_seccomp_filter(pool):
    # No root needed: seccomp applies on every path (only no_new_privs).
    facts = pool.diagnose("user:seccomp")
    status = _status(facts["worker_pid"])
    assert status["Seccomp"].strip() == "2"  # filter mode
    assert status["NoNewPrivs"].strip() == "1"
    assert pool.layers.seccomp == "on"


@pytest.mark.skipif(not IS_ROOT, reason="the root-only isolation path")
def test_root_path_empties_every_capability_set(pool):
    if not pool.isolated:
        pytest.skip("this host refuses the isolation")
    status = _status(pool.diagnose("user:caps")["worker_pid"])
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[name], 16) == 0, (name, status[name])


@pytest.mark.skipif(not IS_ROOT, reason="the root-only isolation path")
def test_root_path_gives_each_worker_namespaces_of_its_own(pool):
    if not pool.isolated:
        pytest.skip("this host refuses the isolation")
    first = pool.diagnose("user:ns-a")
    second = pool.diagnose("user:ns-b")
    spaces = ("mnt", "pid", "ipc", "uts", "net")
    ours = {name: os.readlink(f"/proc/self/ns/{name}") for name in spaces}
    for facts in (first, second):
        theirs = {name: os.readlink(f"/proc/{facts['worker_pid']}/ns/{name}") for name in spaces}
        for name in spaces:
            assert theirs[name] != ours[name], name
        assert facts["pid"] == 1  # alone in its pid namespace
        assert facts["hostname"] is None  # uname: EPERM (the kernel's version is not given away)
    for name in spaces:  # and not one shared by the workers
        assert os.readlink(f"/proc/{first['worker_pid']}/ns/{name}") != os.readlink(
            f"/proc/{second['worker_pid']}/ns/{name}"
        ), name
    assert pool.layers.namespaces == ("mount", "pid", "ipc", "uts", "net")


@pytest.mark.skipif(not IS_ROOT, reason="the root-only isolation path")
def test_root_path_drops_uid_network_and_fork():
    # The namespaces and the uid on their own, behind no seccomp filter (which would kill
    # the worker at socket() before the network namespace is ever tried).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    settings = make_settings(worker_seccomp="off")
    with server, WorkerPool(settings, diagnostics=True, executor=EXECUTOR) as pool:
        if not pool.isolated:
            pytest.skip("this host refuses the isolation")
        facts = pool.diagnose("user:root-path", connect_port=port, try_fork=True, try_setuid0=True)
        assert facts["uid"] != 0 and facts["euid"] != 0 and facts["gid"] != 0
        assert facts["groups"] == []
        assert facts["connect"] == "error: Network is unreachable"  # a private, empty network namespace
        assert facts["fork"] == "error: Resource temporarily unavailable"  # RLIMIT_NPROC bites once not root
        assert facts["setuid0"] == "error: Operation not permitted"
        assert facts["hostname"] == "worker"  # its own uts namespace; the host's name is untouched
        assert os.uname().nodename != "worker"
        assert pool.layers.missing["seccomp"] == "turned off by LOGIC_WORKER_SECCOMP=off"


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


def test_non_root_path_works_with_isolation_off(listener, caplog):
    """Without root (here: isolation off) there is no namespace, uid change or cgroup: the
    seccomp filter, the rlimits and the sandbox stand; the pool says so as a warning."""
    with caplog.at_level("WARNING", logger="logic.workers"):
        pool = WorkerPool(make_settings(), isolate=False, diagnostics=True, executor=EXECUTOR)
    with pool:
        assert pool.isolated is False
        why = "isolation is turned off"
        assert pool.layers.missing == {"namespaces": why, "uid": why, "cgroups": why}
        assert pool.layers.summary() == (
            f"isolation: seccomp, rlimits; missing: namespaces ({why}); uid ({why}); cgroups ({why})"
        )
        assert f"worker jail incomplete: {pool.layers.summary()}" in caplog.text
        result = pool.run(make_job(OK_SOURCE), no_secrets)
        assert result.status == "success"
        facts = pool.diagnose("user:alice")
        assert facts["uid"] == os.getuid()
        assert facts["pid"] == facts["worker_pid"]  # the host's pid namespace
        assert _status(facts["worker_pid"])["Seccomp"].strip() == "2"
        assert facts["rlimits"]["RLIMIT_FSIZE"] == [0, 0]
        assert facts["rlimits"]["RLIMIT_NOFILE"] == [16, 16]
        assert facts["environ"] == {}
        assert set(_host_view_of_fds(facts["worker_pid"])) == {"0", "1", "2", "3"}


def test_with_every_layer_off_the_host_network_stays_reachable(listener):
    """Documented: isolation and seccomp both off leave only the rlimits and the sandbox."""
    settings = make_settings(worker_seccomp="off")
    with WorkerPool(settings, isolate=False, diagnostics=True, executor=EXECUTOR) as pool:
        assert pool.layers.summary().startswith("isolation: rlimits; missing: seccomp (turned off")
        assert pool.diagnose("user:alice", connect_port=listener)["connect"] == "ok"


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
