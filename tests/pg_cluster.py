"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's binaries, initdb under a
temporary folder, a server on loopback only, gone when stopped.

`fsync=off` and friends make it fast and are for throwaway test data only (never for a
cluster anyone keeps). As root, initdb and the server run as the `postgres` user (initdb
refuses root); the folder is handed to that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# Throwaway data: nothing to lose, so no durability work at all.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int
    listen: tuple[str, ...]
    bin: Path
    user: str = "logic"
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "postgres.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres", host: str | None = None) -> str:
        return f"postgresql://{self.user}@{host or self.listen[0]}:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        options = " ".join(
            [f"-h {','.join(self.listen)}", f"-p {self.port}", f"-k {self.root}", "-c max_connections=300"]
            + [f"-c {s}" for s in FAST_SETTINGS]
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        self._run(str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", self.user, name)
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(
    listen: tuple[str, ...] = ("127.0.0.1",), port: int | None = None, trust_hosts: tuple[str, ...] = ()
) -> Cluster:
    """initdb (about half a second) and start a cluster listening on `listen` only; the
    superuser `logic` needs no password from this machine's loopback addresses, nor from
    `trust_hosts` (addresses such as "10.77.0.2/32": a network namespace's end of a veth)."""
    binaries = pg_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    # As root the server runs as `postgres`, which must reach the folder: not under a
    # private TMPDIR (pytest's are 0700), so /tmp itself.
    root = Path(tempfile.mkdtemp(prefix="logic-pg-", dir="/tmp" if os.geteuid() == 0 else None))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    cluster = Cluster(root=root, port=port or free_port(listen[0]), listen=listen, bin=binaries)
    try:
        cluster._run(
            str(binaries / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            cluster.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        if trust_hosts:
            with (cluster.data / "pg_hba.conf").open("a") as hba:
                hba.writelines(f"host all all {host} trust\n" for host in trust_hosts)
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster
