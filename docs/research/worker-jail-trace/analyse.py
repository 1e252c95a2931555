"""Which system calls jailed workers made after the seccomp filter was installed, and how they ended.

    python3 docs/research/worker-jail-trace/analyse.py OUTDIR

A worker's trace is the part after its `prctl(PR_SET_SECCOMP, ...)`. Prints each call with
its count, how many calls failed with which errno, and how many workers the filter killed
(SIGSYS) with the call that did it.
"""

from __future__ import annotations

import collections
import glob
import re
import sys

CALL = re.compile(r"^\d\d:\d\d:\d\d\.\d+ (?:<\.\.\. )?([a-z0-9_]+)[( ]")
ERROR = re.compile(r"= -1 (E[A-Z]+)")


def main() -> None:
    calls: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    killed: collections.Counter = collections.Counter()
    workers = 0
    for path in glob.glob(sys.argv[1] + "/*"):
        with open(path, errors="replace") as handle:
            lines = handle.read().splitlines()
        start = next((i for i, line in enumerate(lines) if "PR_SET_SECCOMP" in line), None)
        if start is None:
            continue  # a zygote, or a child that never confined itself
        workers += 1
        last = None
        for line in lines[start + 1 :]:
            if "killed by SIGSYS" in line:
                killed[last] += 1
                continue
            match = CALL.match(line)
            if not match or "resumed>" in line:
                continue
            last = match.group(1)
            calls[last] += 1
            error = ERROR.search(line)
            if error:
                errors[(last, error.group(1))] += 1
    print(f"jailed processes traced: {workers}")
    print("calls after the filter:")
    for name, count in calls.most_common():
        print(f"  {count:8d} {name}")
    print("failed calls (name, errno): count")
    for (name, err), count in errors.most_common():
        print(f"  {count:8d} {name} {err}")
    print("killed by the filter, by the last call seen:", dict(killed))


if __name__ == "__main__":
    main()
