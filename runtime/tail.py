"""Live tails for the command line: read one of `logic serve`'s server-sent event streams.

`logic subscribe`, `logic functions logs --follow` and `logic integrations logs --follow`
read the very streams the API serves (runtime/http/live.py), from the server the
settings name (`LOGIC_HOST`/`LOGIC_PORT`, or `--url`). The CLI works on the local data
directory, so it needs no token from the user: it makes a temporary one for the
duration of the tail (label "logic tail (temporary)") and revokes it when the tail
ends -- unless `LOGIC_TOKEN` gives one. A stream the server ends (it stops, or this
reader fell behind) is opened again after a short pause, with a note on stderr: what
was published in between is not shown, as a stream starts from "now".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from store.errors import LogicError

RECONNECT_S = 1.0
TEMPORARY_LABEL = "logic tail (temporary)"


class ServerUnreachable(LogicError):
    status = 503


@dataclass(frozen=True)
class Frame:
    event: str
    data: dict[str, Any]


def frames(lines: Iterator[str]) -> Iterator[Frame]:
    """SSE frames from a stream's lines: `event:` and `data:` fields, a blank line ends a
    frame, comments (keep-alives) are skipped, a frame whose data is not JSON is dropped."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                try:
                    body = json.loads("\n".join(data))
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    yield Frame(event, body)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def follow(
    url: str,
    path: str,
    token: str,
    on_frame: Callable[[Frame], None],
    *,
    on_reconnect: Callable[[str], None],
    on_open: Callable[[], None] = lambda: None,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Read `path` on the server at `url` until interrupted (or `keep_going()` is false
    after a frame); reconnect when the server ends the stream. `on_open` runs once the
    stream is open (so history printed there leaves no gap before the live part). An HTTP
    error ends the tail with its message; a server that is not there, with what to do."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    timeout = httpx.Timeout(10.0, read=None)  # keep-alives come every few seconds; no read deadline
    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
        while True:
            try:
                with client.stream("GET", path) as response:
                    if response.status_code != 200:
                        response.read()
                        raise _error(response)
                    on_open()
                    for frame in frames(response.iter_lines()):
                        on_frame(frame)
                        if not keep_going():
                            return
            except httpx.ConnectError:
                raise ServerUnreachable(
                    f"no server at {url}: start `logic serve`, or point --url (or LOGIC_HOST/LOGIC_PORT) at it"
                ) from None
            except (httpx.ReadError, httpx.RemoteProtocolError):
                pass
            on_reconnect("the stream ended; opening it again (events in between are not shown)")
            time.sleep(RECONNECT_S)


def _error(response: httpx.Response) -> LogicError:
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text or f"HTTP {response.status_code}"
    error = LogicError(f"the server refused the stream: {message}")
    error.status = response.status_code
    return error
