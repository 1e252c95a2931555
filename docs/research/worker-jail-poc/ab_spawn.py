"""A/B of one new worker (fork, confinement, ready), each layer on or off, interleaved (issue 15).

.venv/bin/python docs/research/worker-jail-poc/ab_spawn.py
"""

import statistics
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from runtime.workers import WorkerPool
from tests.runtime.workers.support import make_settings

variants = {
    "jail": (make_settings(), {}),
    "before": (make_settings(), {"jail": False}),
    "no-seccomp": (make_settings(worker_seccomp="off"), {}),
    "no-cgroups": (make_settings(worker_cgroups=False), {}),
    "isolate-off": (make_settings(), {"isolate": False}),
}
pools = {k: WorkerPool(s, prefork=False, **kw) for k, (s, kw) in variants.items()}
res = {k: [] for k in pools}
for _round in range(10):
    for k, p in pools.items():
        for _ in range(30):
            t = time.perf_counter()
            p._spawn().discard()
            res[k].append(time.perf_counter() - t)
for k, v in res.items():
    print(f"{k:12s} p50 {statistics.median(v) * 1e3:6.2f} ms  p90 {sorted(v)[len(v) * 9 // 10] * 1e3:6.2f}")
for p in pools.values():
    p.close()
