"""Performance harness for logic-runtime: `python -m benchmarks [--quick] [--json PATH]`.

Each workload runs beside its peers in the same process tree, interleaved
round by round, and reports median and p99 figures, the ratios between them
and the targets of the performance issue (see DESIGN.md, "Performance").
"""

from __future__ import annotations

from collections.abc import Callable


def _with_lab(module_name: str) -> Callable:
    def run(report, quick: bool) -> None:
        import importlib

        from .lab import Lab

        module = importlib.import_module(f"{__name__}.{module_name}")
        lab = Lab()
        try:
            module.run(report, lab, quick)
        finally:
            lab.close()

    return run


def _plain(module_name: str) -> Callable:
    def run(report, quick: bool) -> None:
        import importlib

        importlib.import_module(f"{__name__}.{module_name}").run(report, quick)

    return run


WORKLOADS: dict[str, Callable] = {
    "warm": _with_lab("warm"),
    "cold": _with_lab("cold"),
    "compute": _with_lab("compute"),
    "secrets": _with_lab("secrets"),
    "redaction": _plain("redaction"),
    "ingest": _plain("ingest"),  # also reports the "memory" section, measured on the same server
    "noisy": _plain("noisy"),
    "console": _plain("console"),
    "streams": _plain("streams"),
    "jail": _plain("jail"),  # the worker jail against the layers before it, side by side
    "scale": _plain("scale"),  # worker nodes on one PostgreSQL (skipped without it)
    "claims": _plain("claims"),  # the claim loop, PostgreSQL beside SQLite
}

__all__ = ["WORKLOADS"]
