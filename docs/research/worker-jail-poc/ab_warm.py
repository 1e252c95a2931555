"""A/B of the warm worker path: pool.run of a trivial job, each layer on or off, interleaved (issue 15).

.venv/bin/python docs/research/worker-jail-poc/ab_warm.py
"""

import statistics
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from runtime.workers import WorkerPool
from tests.runtime.workers.support import OK_SOURCE, make_job, make_settings, no_secrets

variants = {
    "jail": (make_settings(), {}),
    "before": (make_settings(), {"jail": False}),
    "no-seccomp": (make_settings(worker_seccomp="off"), {}),
    "no-cgroups": (make_settings(worker_cgroups=False), {}),
}
pools = {k: WorkerPool(s, **kw) for k, (s, kw) in variants.items()}
jobs = {k: make_job(OK_SOURCE, owner="user:ab", version_key="ab:1") for k in pools}
res = {k: [] for k in pools}
for _round in range(8):
    for k, p in pools.items():
        for _ in range(300):
            t = time.perf_counter()
            p.run(jobs[k], no_secrets)
            res[k].append(time.perf_counter() - t)
for k, v in res.items():
    v = v[300:]
    print(f"{k:12s} p50 {statistics.median(v) * 1e6:7.1f} us  p10 {sorted(v)[len(v) // 10] * 1e6:7.1f}")
for p in pools.values():
    p.close()
