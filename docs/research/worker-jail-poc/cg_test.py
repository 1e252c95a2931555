"""cgroup v1 per-worker limits: memory (+memsw = no swap), pids, cpu quota. Run as root.

Child cgroups are made under the cgroup this process is already in, per controller
(so any outer limit still applies), and removed at the end.
"""

import os
import signal
import sys
import time

UID = 1900000050


def own(controller):
    for line in open("/proc/self/cgroup"):
        _id, ctrls, path = line.rstrip("\n").split(":", 2)
        if controller in ctrls.split(","):
            return f"/sys/fs/cgroup/{controller}{path}"
    raise LookupError(controller)


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def read(path):
    return open(path).read().strip()


def child_in(cgroups, work):
    """fork; the child waits until the parent moved it into `cgroups`, drops to UID, runs work()."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os.setgroups([])
        os.setresgid(UID, UID, UID)
        os.setresuid(UID, UID, UID)
        try:
            work()
        finally:
            os._exit(0)
    os.close(r)
    t = time.perf_counter()
    for cg in cgroups:
        write(f"{cg}/cgroup.procs", pid)
    move_ms = 1e3 * (time.perf_counter() - t)
    t0 = time.perf_counter()
    os.write(w, b"x")
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
    return how, wall, ru.ru_utime + ru.ru_stime, move_ms


def hog_memory():
    chunks = []
    for i in range(1, 1000):
        chunks.append(bytearray(8 * 1024 * 1024))  # touched: bytearray zero-fills
        if i % 4 == 0:
            os.write(1, f"    allocated {8 * i} MiB\n".encode())


def fork_many():
    n = 0
    kids = []
    try:
        for _ in range(50):
            pid = os.fork()
            if pid == 0:
                time.sleep(2)
                os._exit(0)
            kids.append(pid)
            n += 1
    except OSError as e:
        os.write(1, f"    fork #{n + 1} failed: {e}\n".encode())
    for k in kids:
        os.kill(k, signal.SIGKILL)
        os.waitpid(k, 0)


def spin():
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        pass


def main():
    name = "jail-research-w0"
    mem, pids, cpu = (own(c) + "/" + name for c in ("memory", "pids", "cpu"))
    t = time.perf_counter()
    for d in (mem, pids, cpu):
        os.mkdir(d)
    write(f"{mem}/memory.limit_in_bytes", 64 << 20)
    write(f"{mem}/memory.memsw.limit_in_bytes", 64 << 20)  # = limit: no swap (set after limit_in_bytes)
    write(f"{mem}/memory.swappiness", 0)
    write(f"{pids}/pids.max", 8)
    write(f"{cpu}/cpu.cfs_period_us", 100000)
    write(f"{cpu}/cpu.cfs_quota_us", 20000)  # 20% of one CPU
    print(f"created + configured 3 cgroups in {1e3 * (time.perf_counter() - t):.2f} ms:")
    for d in (mem, pids, cpu):
        print("  ", d)
    print(f"  memory.limit_in_bytes={read(mem + '/memory.limit_in_bytes')} memsw={read(mem + '/memory.memsw.limit_in_bytes')}"
          f" pids.max={read(pids + '/pids.max')} cpu.cfs_quota_us={read(cpu + '/cpu.cfs_quota_us')}/{read(cpu + '/cpu.cfs_period_us')}")
    try:
        print("memory hog in a 64 MiB memory cgroup:")
        how, wall, cpu_s, move_ms = child_in([mem], hog_memory)
        print(f"  child {how} after {wall:.2f}s (move into cgroup: {move_ms:.3f} ms); failcnt={read(mem + '/memory.failcnt')};"
              f" oom_control: {read(mem + '/memory.oom_control').replace(chr(10), ', ')}")
        print("fork 50 children in a pids.max=8 cgroup:")
        how, wall, cpu_s, _ = child_in([pids], fork_many)
        print(f"  child {how}; pids.events: {read(pids + '/pids.events')}")
        print("spin 1 s wall in a 20% cpu quota cgroup (2 cores):")
        how, wall, cpu_s, _ = child_in([cpu], spin)
        print(f"  child {how}: {cpu_s:.2f} s CPU in {wall:.2f} s wall; cpu.stat: {read(cpu + '/cpu.stat').replace(chr(10), ', ')}")
        print("same spin without the cgroup:")
        how, wall, cpu_s, _ = child_in([], spin)
        print(f"  child {how}: {cpu_s:.2f} s CPU in {wall:.2f} s wall")
    finally:
        for d in (mem, pids, cpu):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.02)  # the dead child's charge may take a moment to go
        print("removed:", [not os.path.exists(d) for d in (mem, pids, cpu)])


if __name__ == "__main__":
    sys.exit(main())
