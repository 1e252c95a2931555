"""`python -m benchmarks [--quick] [--json PATH] [--only NAME,...]`: run every workload, print a table, write JSON."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import traceback

from . import WORKLOADS
from .harness import Report, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller inputs (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="write every figure and ratio to this JSON file")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    args = parser.parse_args(argv)
    chosen = list(WORKLOADS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    # Reproducible: no operator setting from the environment tunes what we measure.
    for name in [n for n in os.environ if n.startswith("LOGIC_")]:
        del os.environ[name]

    report = Report(quick=args.quick)
    for name in chosen:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            WORKLOADS[name](report, args.quick)
        except Exception as exc:  # one broken workload must not hide the others' figures
            section = next((s for s in report.sections if s.key == name), None) or report.section(name, name)
            section.errors.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
        gc.collect()
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    print(report.table())
    if args.json:
        write_json(report, args.json)
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
