"""The error of a failed run: type, message and a traceback of the author's own lines.

Only frames whose code comes from the function's file are shown, with the
line text taken from the deployed source (threat: host paths, sandbox
internals and library source in a user-visible record). Chained exceptions
(`raise ... from`, or raised while handling another) are shown when they
passed through the author's code. `str(exc)` may fail or be huge: both are
handled. Repeated frames (recursion) collapse as CPython's do.
"""

from __future__ import annotations

import re
from typing import Any

MESSAGE_MAX = 2000
CAUSE_MESSAGE_MAX = 500  # a chained exception's message: context, not the main story
CHAIN_MAX = 5
FRAMES_MAX = 40
_REPEAT_SHOWN = 3

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def safe_message(exc: BaseException, limit: int = MESSAGE_MAX) -> str:
    try:
        text = str(exc)
    except Exception:
        text = f"<unprintable {type(exc).__name__} object>"
    if len(text) > limit:
        text = text[:limit] + message_cut(len(text) - limit)
    return text


def message_cut(more: int) -> str:
    """The marker written in place of the rest of a long message (the engine masks the
    text before it: MESSAGE_CUT finds it)."""
    return f"... [{more} more characters]"


MESSAGE_CUT = re.compile(r"\.\.\. \[\d+ more characters\]")


def _user_frames(exc: BaseException, filename: str) -> list[tuple[int, str]]:
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            frames.append((tb.tb_lineno or code.co_firstlineno, code.co_name))
        tb = tb.tb_next
    return frames


def _format_frames(frames: list[tuple[int, str]], filename: str, lines: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    if len(frames) > FRAMES_MAX:
        half = FRAMES_MAX // 2
        omitted = len(frames) - 2 * half
        frames = frames[:half] + [(-omitted, "")] + frames[-half:]
    previous, repeats = None, 0
    for frame in frames:
        if frame == previous:
            repeats += 1
            if repeats >= _REPEAT_SHOWN:
                continue
        else:
            if repeats >= _REPEAT_SHOWN:
                out.append(f"  [Previous line repeated {repeats - _REPEAT_SHOWN + 1} more times]")
            previous, repeats = frame, 0
        line, name = frame
        if line < 0:
            out.append(f"  [... {-line} frames omitted ...]")
            continue
        out.append(f'  File "{filename}", line {line}, in {name}')
        if 0 < line <= len(lines) and lines[line - 1].strip():
            out.append("    " + lines[line - 1].strip())
    if repeats >= _REPEAT_SHOWN:
        out.append(f"  [Previous line repeated {repeats - _REPEAT_SHOWN + 1} more times]")
    return out


def _chain(exc: BaseException, filename: str) -> list[tuple[BaseException, str]]:
    """The exception and its causes, oldest first, each with the separator printed before it."""
    chain: list[tuple[BaseException, str]] = [(exc, "")]
    seen = {id(exc)}
    current = exc
    while len(chain) < CHAIN_MAX:
        if current.__cause__ is not None:
            older, separator = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            older, separator = current.__context__, _CONTEXT
        else:
            break
        if id(older) in seen or not _user_frames(older, filename):  # keep to the author's own code
            break
        seen.add(id(older))
        chain[-1] = (chain[-1][0], separator)
        chain.append((older, ""))
        current = older
    chain.reverse()
    return chain


def describe_exception(exc: BaseException, filename: str, lines: tuple[str, ...]) -> dict[str, Any]:
    """{"type", "message", "traceback"} for a run record."""
    parts: list[str] = []
    for item, separator in _chain(exc, filename):
        parts.append(separator)
        frames = _user_frames(item, filename)
        if frames:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(f"{line}\n" for line in _format_frames(frames, filename, lines))
        message = safe_message(item, CAUSE_MESSAGE_MAX if item is not exc else MESSAGE_MAX)
        parts.append(f"{type(item).__name__}: {message}\n" if message else f"{type(item).__name__}\n")
    return {"type": type(exc).__name__, "message": safe_message(exc), "traceback": "".join(parts)}
