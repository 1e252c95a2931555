"""Which layers of the worker jail are in effect, and why each missing one is missing.

The zygote decides them at start (it probes what the kernel allows) and reports them in
its hello; the pool keeps them as `pool.layers`, logs a warning naming what is missing,
and `logic serve` prints `summary()` at start, e.g.

    isolation: seccomp, mount+pid+ipc+uts+net namespaces, uid, cgroups (memory, pids, cpu), rlimits

README's "Security model: the worker's layers" says what each one stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACES = ("mount", "pid", "ipc", "uts", "net")


@dataclass(frozen=True)
class Layers:
    seccomp: str = "off"  # "on", "log" (allows and logs what it would refuse) or "off"
    namespaces: tuple[str, ...] = ()  # of NAMESPACES, in that order
    uid: bool = False  # an unprivileged uid of its own, capabilities dropped
    cgroups: tuple[str, ...] = ()  # controllers limiting each worker: memory, pids, cpu
    missing: dict[str, str] = field(default_factory=dict)  # layer -> why it is not in effect

    def summary(self) -> str:
        """One line: what is on, then what is missing and why."""
        on = []
        if self.seccomp == "on":
            on.append("seccomp")
        elif self.seccomp == "log":
            on.append("seccomp (log only)")
        if self.namespaces:
            on.append("+".join(self.namespaces) + (" namespaces" if len(self.namespaces) > 1 else " namespace"))
        if self.uid:
            on.append("uid")
        if self.cgroups:
            on.append(f"cgroups ({', '.join(self.cgroups)})")
        on.append("rlimits")
        line = "isolation: " + ", ".join(on)
        if self.missing:
            line += "; missing: " + "; ".join(f"{layer} ({why})" for layer, why in self.missing.items())
        return line

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_json(self) -> dict:
        return {
            "seccomp": self.seccomp,
            "namespaces": list(self.namespaces),
            "uid": self.uid,
            "cgroups": list(self.cgroups),
            "missing": dict(self.missing),
        }

    @classmethod
    def from_json(cls, data: dict) -> Layers:
        return cls(
            seccomp=str(data.get("seccomp", "off")),
            namespaces=tuple(data.get("namespaces", ())),
            uid=bool(data.get("uid", False)),
            cgroups=tuple(data.get("cgroups", ())),
            missing={str(k): str(v) for k, v in dict(data.get("missing", {})).items()},
        )
