"""What a run sends out while it runs: log lines (print and logic.log) and events.

Everything goes through one `RunOutput` per run, which enforces the limits
before anything reaches the host (threat: a run flooding the worker's IPC or
the run log): log text is capped at `log_max_bytes` in total — the line that
crosses the cap is cut, one marker line follows, the rest is dropped — and
`logic.publish` refuses events past `events_max`, names outside
1..`event_name_max_chars` characters and data over `event_data_max_bytes`
(all from the operator's settings, passed down in RunLimits). After the run the output is
closed: a generator finalised later cannot log, publish or read secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .results import dumps_exact

LOG_CUT_PREFIX = "[log truncated: limit of "


def line_bytes(text: str) -> int:
    """What one log line costs against the cap: its UTF-8 bytes plus a newline (an empty
    line is not free). The one accounting of output, on both sides of the worker."""
    return (len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))) + 1


class LogBudget:
    """The log cap of one run, kept the same way by the sandbox (which cuts) and by the
    parent (which checks what a worker sends, and cuts itself if the worker did not).

    `admit(text)` -> (what of the line to keep or None, whether the log is cut here: the
    marker line follows it). The line that crosses the cap keeps the bytes that fit
    (never half a character); every line after it is dropped.
    """

    __slots__ = ("cap", "left", "cut", "marker")

    def __init__(self, cap: int):
        self.cap = self.left = cap
        self.cut = False
        self.marker = f"{LOG_CUT_PREFIX}{cap} bytes reached]"

    def admit(self, text: str) -> tuple[str | None, bool]:
        if self.cut:
            return None, False
        cost = line_bytes(text)
        if cost <= self.left:
            self.left -= cost
            return text, False
        room, self.left, self.cut = self.left - 1, 0, True
        head = text.encode("utf-8", "surrogatepass")[: max(room, 0)].decode("utf-8", "ignore")
        return (head or None), True

    def is_marker(self, text: str) -> bool:
        """Whether a line received is the sandbox's own marker: the marker text, arriving
        where it no longer fits (only the sandbox's cut sends it there)."""
        return not self.cut and text == self.marker and line_bytes(text) > self.left


class PublishLimitError(RuntimeError):
    """A run tried to publish more events than its limit."""


class OutputClosed(RuntimeError):
    """Output used after its run ended."""


def exact_str(value: Any, what: str) -> str:
    """An exact str copy of `value` (threat: str subclasses whose methods run user code)."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"{what} must be a str, not {type(value).__name__}")


class RunOutput:
    __slots__ = ("_host", "_log", "_events_left", "_events_max", "_data_max", "_name_max", "_closed")

    def __init__(
        self, host: Any, log_max_bytes: int, events_max: int, event_data_max_bytes: int, event_name_max_chars: int
    ):
        self._host = host
        self._name_max = event_name_max_chars
        self._log = LogBudget(log_max_bytes)
        self._events_left = self._events_max = events_max
        self._data_max = event_data_max_bytes
        self._closed = False

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def log(self, level: str, message: str) -> None:
        if self._closed:
            return
        kept, cut = self._log.admit(message)
        if kept is not None:
            self._host.log(level, kept)
        if cut:
            self._host.log("warning", self._log.marker)

    def log_args(self, level: str, args: tuple) -> None:
        self.log(level, " ".join([a if type(a) is str else str(a) for a in args]))

    def publish(self, name: Any, data: Any = None) -> None:
        if self._closed:
            raise OutputClosed("this run has ended; events can no longer be published")
        name = exact_str(name, "event name")
        if not 1 <= len(name) <= self._name_max:
            raise ValueError(f"event name must be 1 to {self._name_max} characters, not {len(name)}")
        if data is not None:
            data = (
                data
                if type(data) is str
                else (str.__str__(data) if isinstance(data, str) else dumps_exact(data, self._data_max, "event data"))
            )
            size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
            if size > self._data_max:
                raise ValueError(f"event data is {size} bytes; the limit is {self._data_max} bytes")
        if self._events_left <= 0:
            raise PublishLimitError(f"a run may publish at most {self._events_max} events")
        self._events_left -= 1
        self._host.publish(name, data)

    def printer(self, _getattr_: Any = None) -> PrintCollector:
        """`_print_`: RestrictedPython makes one collector per function that prints."""
        return PrintCollector(self.log)


class PrintCollector:
    """`print(...)` in user code: each call becomes one "info" log line."""

    __slots__ = ("_log",)

    def __init__(self, log: Callable[[str, str], None]):
        self._log = log

    def _call_print(
        self, *objects: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
    ) -> None:
        if file is not None:
            raise TypeError("print(file=...) is not supported in Logic functions")
        sep = " " if sep is None else exact_str(sep, "sep")
        end = "\n" if end is None else exact_str(end, "end")
        text = sep.join([o if type(o) is str else str(o) for o in objects]) + end
        if text:
            self._log("info", text[:-1] if text.endswith("\n") else text)
