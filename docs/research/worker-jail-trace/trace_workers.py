"""Run a command while strace follows every worker zygote it starts (and so every worker).

    .venv/bin/python docs/research/worker-jail-trace/trace_workers.py OUTDIR -- COMMAND...

One trace file per process (`strace -f -ff -tt`), in OUTDIR; analyse them with
analyse.py. strace attaches to each zygote as soon as it appears (polling /proc), so
the command itself (pytest) runs at full speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def zygotes() -> set[int]:
    """Zygote processes (a worker has the same command line: its parent is a zygote)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                if b"runtime.workers.zygote" not in handle.read():
                    continue
            with open(f"/proc/{name}/stat") as handle:
                found[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    return {pid for pid, parent in found.items() if parent not in found}


def main() -> int:
    outdir, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    os.makedirs(outdir, exist_ok=True)
    child = subprocess.Popen(command)
    traced: set[int] = set()
    tracers = []
    while child.poll() is None:
        for pid in zygotes() - traced:
            traced.add(pid)
            tracers.append(
                subprocess.Popen(
                    ["strace", "-f", "-ff", "-tt", "-qq", "-s", "64", "-o", f"{outdir}/z{pid}", "-p", str(pid)],
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.01)
    for tracer in tracers:
        try:
            tracer.wait(10)
        except subprocess.TimeoutExpired:
            tracer.kill()
    print(f"traced {len(traced)} zygotes", file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
