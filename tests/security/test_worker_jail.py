"""Promise 3, second layer: an escape from the language layer finds nothing to take.

A rogue executor (tests/runtime/workers/rogue_executor.py) runs *unrestricted* Python in
real workers of a real zygote and tries what an attacker who broke out of
RestrictedPython would: read the host's files, the project's source, the data home,
another worker's memory and environment; open sockets; connect to the server; exec a
shell; fork; ptrace; mount; write files; take memory; fork-bomb; and the i386 and x32
system-call doors past a filter that checks numbers only. Each refusal is asserted by
its errno or the run's status, on each path that can run here:

- jailed: root, every layer (seccomp, mount+pid+ipc+uts+net namespaces, uid, cgroups);
- fallback: isolation off, as without root (seccomp and rlimits only);
- the namespaces and uid alone (seccomp off): what stands if the filter were bypassed;
- cgroups: memory the kernel charges, past the limit, ends "memory_exceeded".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.workers import WorkerPool
from tests.runtime.workers.support import IS_ROOT, ROOT, make_job, make_settings, no_secrets

ROGUE = "tests.runtime.workers.rogue_executor"
SIGSYS = "the worker made a forbidden system call and was killed (seccomp, SIGSYS)"
KILLED = ("crashed", SIGSYS)
MEMORY = ("memory_exceeded", "the run exceeded its memory limit")


def errno(name: str) -> tuple[str, str]:
    return ("errno", name)


class Target:
    """What the attacker goes for: the data home, a unix socket and a TCP port of the host,
    and another tenant's worker."""

    def __init__(self, base: Path):
        self.home = base / "logic-home"
        self.home.mkdir()
        (self.home / "master.key").write_text("the-master-key")
        self.socket_dir = base / "sockets"
        self.socket_dir.mkdir()
        os.chmod(base, 0o755)
        os.chmod(self.socket_dir, 0o777)
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix_path = str(self.socket_dir / "db.sock")
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(8)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.port = self.tcp.getsockname()[1]

    def nobody_connected(self) -> bool:
        for listener in (self.unix, self.tcp):
            listener.setblocking(False)
            try:
                listener.accept()[0].close()
                return False
            except BlockingIOError:
                pass
        return True

    def close(self) -> None:
        self.unix.close()
        self.tcp.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    target = Target(tmp_path_factory.mktemp("jail-target"))
    yield target
    target.close()


def attempt(pool: WorkerPool, probe: str, arg: object = "", owner: str = "user:attacker", memory_mb: int = 128):
    """(errno, NAME) | (ok, value) | (status, error message) of one probe in a worker of `owner`."""
    result = pool.run(make_job(f"jail:{probe}:{arg}", owner=owner, timeout_s=5.0, memory_mb=memory_mb), no_secrets)
    if result.status != "success":
        return result.status, result.error["message"]
    ((kind, value),) = result.result.items()
    return kind, value


def victim_pid(pool: WorkerPool) -> int:
    """A worker of another tenant, alive: its pid as the host sees it."""
    return pool.run(make_job("fine", owner="user:victim"), no_secrets).worker_pid


def assert_healthy(pool: WorkerPool) -> None:
    assert pool.run(make_job("fine", owner="user:bystander"), no_secrets).status == "success"
    assert pool.run(make_job("fine", owner="user:attacker"), no_secrets).status == "success"


# -- jailed: root, every layer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def jailed():
    if not IS_ROOT:
        pytest.skip("the jail's root path")
    with WorkerPool(make_settings(), executor=ROGUE) as pool:
        layers = pool.layers  # cgroups are not needed here: their own tests are below
        if layers.seccomp != "on" or not layers.uid or layers.namespaces != ("mount", "pid", "ipc", "uts", "net"):
            pytest.skip(f"this host does not allow every layer: {layers.summary()}")
        yield pool


def jailed_attacks(target: Target, victim: int, server_pid: int) -> list[tuple[str, object, tuple]]:
    return [
        ("read", "/etc/passwd", errno("EPERM")),
        ("read", ROOT / "README.md", errno("EPERM")),
        ("read", ROOT / "store" / "settings.py", errno("EPERM")),
        ("read", target.home / "master.key", errno("EPERM")),
        ("listdir", target.home, errno("EPERM")),
        ("read", f"/proc/{victim}/environ", errno("EPERM")),
        ("read", f"/proc/{victim}/mem", errno("EPERM")),
        ("read", f"/proc/{server_pid}/environ", errno("EPERM")),
        ("listdir", "/proc", errno("EPERM")),
        ("listdir", "/", errno("EPERM")),
        ("stat", "/etc", errno("EPERM")),  # no path stat either: the host's files stay unknown
        ("write", "/tmp/x", errno("EPERM")),
        ("write", target.socket_dir / "x", errno("EPERM")),
        ("unix", target.unix_path, errno("EPERM")),
        ("tcp", target.port, KILLED),
        ("udp", "", KILLED),
        ("x32", "", KILLED),
        ("i386", "", KILLED),
        ("execve", "/bin/sh", KILLED),
        ("fork", "", errno("EPERM")),
        ("forkbomb", "", errno("EPERM")),
        ("ptrace", victim, KILLED),
        ("ptrace", server_pid, KILLED),
        ("mount", "", KILLED),
        ("kill", server_pid, errno("EPERM")),
        ("kill", victim, errno("EPERM")),
        ("prlimit", victim, errno("EPERM")),
        ("unlimit-memory", "", ("refused", "not allowed to raise maximum limit")),
        ("allocate", 200, MEMORY),  # past RLIMIT_AS (128 MiB here)
    ]


def test_every_escape_is_refused_on_the_root_path(jailed, target):
    victim = victim_pid(jailed)
    outcomes = {}
    for probe, arg, expected in jailed_attacks(target, victim, os.getpid()):
        outcomes[(probe, str(arg))] = (attempt(jailed, probe, arg), expected)
    wrong = {key: got for key, (got, expected) in outcomes.items() if got != expected}
    assert wrong == {}, wrong
    assert target.nobody_connected()
    assert_healthy(jailed)
    os.kill(victim, 0)  # the other tenant's worker is still there


def test_the_worker_sees_only_itself(jailed):
    kind, facts = attempt(jailed, "facts")
    assert kind == "ok"
    assert facts["pid"] == 1 and facts["uid"] != 0
    assert attempt(jailed, "hostname") == ("errno", "EPERM")  # uname: the kernel's version stays unknown


# -- fallback: isolation off (as without root) ----------------------------------------------------


@pytest.fixture(scope="module")
def fallback():
    with WorkerPool(make_settings(), isolate=False, executor=ROGUE) as pool:
        assert pool.layers.seccomp == "on", pool.layers.summary()
        yield pool


def test_every_escape_is_refused_on_the_fallback_path(fallback, target):
    """No namespace, no uid change: the worker has the server's uid and sees the host. The
    seccomp filter alone refuses each escape."""
    victim = victim_pid(fallback)
    wrong = {}
    for probe, arg, expected in jailed_attacks(target, victim, os.getpid()):
        got = attempt(fallback, probe, arg)
        if got != expected:
            wrong[(probe, str(arg))] = got
    assert wrong == {}, wrong
    assert target.nobody_connected()
    assert_healthy(fallback)
    os.kill(victim, 0)


# -- the namespaces and uid alone: if the filter were bypassed ------------------------------------


@pytest.fixture(scope="module")
def namespaced():
    if not IS_ROOT:
        pytest.skip("the jail's root path")
    with WorkerPool(make_settings(worker_seccomp="off"), executor=ROGUE) as pool:
        if pool.layers.namespaces != ("mount", "pid", "ipc", "uts", "net"):
            pytest.skip(f"this host does not allow every namespace: {pool.layers.summary()}")
        yield pool


def test_behind_the_filter_the_namespaces_still_hold(namespaced, target):
    victim = victim_pid(namespaced)
    server = os.getpid()
    attacks = [
        ("read", "/etc/passwd", errno("ENOENT")),  # not in the worker's root
        ("read", ROOT / "README.md", errno("ENOENT")),  # the project's packages only
        ("read", target.home / "master.key", errno("ENOENT")),
        ("read", f"/proc/{victim}/environ", errno("ENOENT")),  # no /proc at all
        ("listdir", "/proc", errno("ENOENT")),
        ("write", "/x", errno("EROFS")),  # the root is read-only
        ("write", ROOT / "runtime" / "x", errno("EROFS")),
        # Its own /tmp, where no file may grow; a checkout under /tmp (CI's) is seen read-only there.
        ("write", "/tmp/x", errno("EFBIG") if not str(ROOT).startswith("/tmp/") else errno("EROFS")),
        ("unix", target.unix_path, errno("ENOENT")),  # the host's sockets are not in its tree
        ("tcp", target.port, errno("ENETUNREACH")),  # an empty network namespace
        ("udp", "", errno("ENETUNREACH")),
        ("execve", "/bin/sh", errno("ENOENT")),
        ("fork", "", errno("EAGAIN")),  # RLIMIT_NPROC 0 under its own uid
        ("forkbomb", "", errno("EAGAIN")),
        ("ptrace", server, errno("ESRCH")),  # the host's processes are not in its pid namespace
        ("kill", server, errno("ESRCH")),
        ("kill", victim, errno("ESRCH")),
        ("mount", "", errno("EPERM")),  # no capability left
        ("stat", "/etc", errno("ENOENT")),
        ("hostname", "", ("ok", "worker")),  # its own uts namespace
    ]
    wrong = {}
    for probe, arg, expected in attacks:
        got = attempt(namespaced, probe, arg)
        if got != expected:
            wrong[(probe, str(arg))] = got
    assert wrong == {}, wrong
    assert target.nobody_connected()
    assert_healthy(namespaced)
    kind, root = attempt(namespaced, "listdir", "/")
    assert kind == "ok" and "etc" not in root and "proc" not in root and "tmp" in root


# -- cgroups: memory counted by the kernel ------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="cgroups are set up as root")
def test_memory_the_kernel_charges_past_the_cgroup_limit_is_memory_exceeded():
    # RLIMIT_AS (256 MiB) would let 150 MiB through; the slot's memory cgroup (64 MiB) does not.
    settings = make_settings(worker_memory_mb=256, worker_cgroup_memory_mb=64)
    with WorkerPool(settings, executor=ROGUE) as pool:
        if "memory" not in pool.layers.cgroups:
            pytest.skip(f"no writable memory cgroup here: {pool.layers.summary()}")
        assert attempt(pool, "touch", 150, memory_mb=256) == MEMORY
        assert attempt(pool, "touch", 16, memory_mb=256) == ("ok", 2)  # under the limit: fine, and the slot is reused
        assert_healthy(pool)
    without = make_settings(worker_memory_mb=256, worker_cgroups=False)
    with WorkerPool(without, executor=ROGUE) as pool:  # the control: address space alone lets it pass
        assert pool.layers.missing["cgroups"] == "turned off by LOGIC_WORKER_CGROUPS=0"
        assert attempt(pool, "touch", 150, memory_mb=256) == ("ok", 18)


@pytest.mark.skipif(not IS_ROOT, reason="cgroups are set up as root")
def test_each_worker_is_in_its_slot_cgroups_and_they_go_with_the_pool():
    with WorkerPool(make_settings(worker_pids_max=5, worker_cpu_percent=50), executor=ROGUE) as pool:
        if pool.layers.cgroups != ("memory", "pids", "cpu"):
            pytest.skip(f"no writable cgroups here: {pool.layers.summary()}")
        pid = pool.run(make_job("fine"), no_secrets).worker_pid
        zygote = pool._spawner.pid
        paths = {}
        with open(f"/proc/{pid}/cgroup") as handle:
            for line in handle.read().splitlines():
                _n, names, path = line.split(":", 2)
                for name in names.split(","):
                    paths[name] = path
        for controller in ("memory", "pids", "cpu"):
            assert f"/logic-workers-{zygote}/slot-" in paths[controller], paths
        base = "/sys/fs/cgroup"
        memory = int(Path(f"{base}/memory{paths['memory']}/memory.limit_in_bytes").read_text())
        assert memory == (128 + 32) * 1024 * 1024  # the worker's memory + the kernel's share
        assert Path(f"{base}/pids{paths['pids']}/pids.max").read_text().strip() == "5"
        assert Path(f"{base}/cpu{paths['cpu']}/cpu.cfs_quota_us").read_text().strip() == "50000"
        sets = [Path(f"{base}/{c}{paths[c]}").parent for c in ("memory", "pids", "cpu")]
    for directory in sets:  # the zygote removed its cgroups on the way out
        assert not directory.exists(), directory


# -- a root container that refuses namespaces ---------------------------------------------------

CONTAINER_PROBE = """
import json, sys
from runtime.workers import WorkerPool
from tests.runtime.workers.support import make_job, make_settings, no_secrets
with WorkerPool(make_settings(), executor="tests.runtime.workers.rogue_executor") as pool:
    out = {"summary": pool.layers.summary()}
    for probe in ("read:/etc/passwd", "tcp:22", "fork:", "facts:"):
        result = pool.run(make_job("jail:" + probe), no_secrets)
        out[probe] = [result.status, result.result, result.error and result.error["message"]]
print(json.dumps(out))
"""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop a capability")
def test_a_root_container_without_cap_sys_admin_keeps_the_filter_and_says_what_is_missing():
    # setpriv drops CAP_SYS_ADMIN from the bounding set, as Docker's default does: unshare fails.
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", sys.executable, "-c", CONTAINER_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    why = "the kernel refused the namespaces: unshare(ipc, uts, net): Operation not permitted"
    assert out["summary"] == f"isolation: seccomp, rlimits; missing: namespaces ({why}); uid ({why}); cgroups ({why})"
    assert "worker jail incomplete: " + out["summary"] in done.stderr  # the warning, in the log
    assert out["read:/etc/passwd"] == ["success", {"errno": "EPERM"}, None]
    assert out["tcp:22"] == ["crashed", None, SIGSYS]
    assert out["fork:"] == ["success", {"errno": "EPERM"}, None]
    assert out["facts:"][1]["ok"]["uid"] == 0  # documented: the server's uid


# -- logic serve says which layers are on --------------------------------------------------------


def test_logic_serve_prints_its_layers(tmp_path):
    from tests.e2e.conftest import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env["LOGIC_HOME"] = str(tmp_path / "home")
    logic = [sys.executable, "-m", "runtime.cli"]
    assert subprocess.run([*logic, "init"], env=env, capture_output=True, timeout=60).returncode == 0
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([*logic, "serve", "--port", str(free_port())], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30

        # The warning (which quotes the line) may come first: wait for the printed line itself.
        def printed() -> bool:
            return any(line.startswith("isolation:") for line in log.read_text().splitlines())

        while not printed() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    line = next(line for line in text.splitlines() if line.startswith("isolation:"))
    if IS_ROOT and "missing" not in line:
        assert line == (
            "isolation: seccomp, mount+pid+ipc+uts+net namespaces, uid, cgroups (memory, pids, cpu), rlimits"
        )
        assert "worker jail incomplete" not in text
    else:  # said plainly: what is missing and why, on stdout and as a warning in the log
        assert "; missing: " in line
        assert "worker jail incomplete: " + line in text
