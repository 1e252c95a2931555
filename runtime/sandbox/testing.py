"""`RecordingHost`: an in-memory `Host` test double that records every callback."""

from __future__ import annotations

from .context import SecretAccessError


class RecordingHost:
    """Serves secrets from a dict (mutable between reads) and records logs, events and reads."""

    def __init__(self, secrets: dict[str, str] | None = None):
        self.secrets: dict[str, str] = dict(secrets or {})
        self.logs: list[tuple[str, str]] = []
        self.events: list[tuple[str, str | None]] = []
        self.reads: list[str] = []

    def read_secret(self, name: str) -> str:
        self.reads.append(name)
        if name not in self.secrets:
            raise SecretAccessError(f"secret {name!r} does not exist")
        return self.secrets[name]

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def publish(self, name: str, data: str | None) -> None:
        self.events.append((name, data))

    @property
    def messages(self) -> list[str]:
        return [message for _, message in self.logs]
