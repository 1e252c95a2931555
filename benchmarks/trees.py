"""A warm run measured in another code tree, beside this one, in one run.

Before and after, in one run: BENCH_WARM_BASELINES="label=/path/to/tree,..." names older
code trees (`git worktree add /tmp/warm-base <commit>`). Each tree, this one too, gets a
process of its own started in that tree (its `benchmarks.lab.Lab`, its store, its worker
pool), and the processes take turns: round by round each runs the same warm run `n`
times while the others wait, in an order rotated per round. A warm run's time on this
machine drifts by up to 2x within minutes, so only figures taken turn about, seconds
apart, can be compared; the ratio is taken per round (this tree's median over the
baseline's, adjacent in time) and its median and range reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Run in the child with the tree first on sys.path: only what every tree's Lab has
# (Lab(), deploy(name, source), run(fn, data)) is used.
_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from benchmarks.lab import Lab
lab = Lab()
try:
    fn = lab.deploy("warm", sys.argv[2])
    for _ in range(100):
        lab.run(fn, "{}")
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        if n <= 0:
            break
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            lab.run(fn, "{}")
            times.append(time.perf_counter() - t0)
        print(json.dumps(times), flush=True)
finally:
    lab.close()
"""


class TreeRunner:
    """A process in `tree` that runs `source` warm, `n` runs at a time, on request."""

    def __init__(self, label: str, tree: Path, source: str, *, timeout_s: float = 60.0):
        self.label = label
        self.tree = tree
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tree), source],
            cwd=tree,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._timeout_s = timeout_s
        try:
            ready = self._line()
        except BaseException:
            self.close()
            raise
        if ready != "ready":
            self.close()
            raise RuntimeError(f"the warm run in tree {label} ({tree}) did not start: {ready[:200]!r}")

    def runs(self, n: int) -> list[float]:
        """Seconds of each of `n` warm runs, record committed."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{n}\n")
        self._proc.stdin.flush()
        return [float(t) for t in json.loads(self._line())]

    def _line(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:  # its traceback went to our stderr
            code = self._proc.wait(self._timeout_s)
            raise RuntimeError(f"the warm run in tree {self.label} ({self.tree}) exited (code {code})")
        return line.strip()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write("0\n")
                self._proc.stdin.flush()
                self._proc.wait(self._timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()


def turn_about(runners: list[TreeRunner], rounds: int, n: int) -> dict[str, list[list[float]]]:
    """Per runner, per round, the seconds of each run; the order rotates per round."""
    out: dict[str, list[list[float]]] = {r.label: [] for r in runners}
    for r in range(rounds):
        shift = r % len(runners)
        for runner in runners[shift:] + runners[:shift]:
            out[runner.label].append(runner.runs(n))
    return out
