"""Test double: a compromised worker's sandbox that abuses the `mask` frame.

Like rogue_executor (whose interface it reuses), the source names the misbehaviour;
it runs in a real confined worker (WorkerPool(executor="tests.runtime.workers.rogue_mask_executor")).
"""

import json
import struct

from runtime.sandbox.masks import MASK_MAX_BYTES, MASKS_PER_RUN_MAX
from tests.runtime.workers.rogue_executor import (  # noqa: F401  (the executor interface the worker needs)
    CompiledFunction,
    RunLimits,
    RunOutcome,
    SecretAccessError,
    compile_function,
)

VALUE = "derived-token-9f8e7d6c5b4a"


def _frame(message: dict) -> bytes:
    payload = json.dumps(message).encode()
    return struct.pack(">I", len(payload)) + payload


def run_function(fn, context, host, *, declared_secrets, limits):
    behaviour = fn.behaviour
    if behaviour == "mask-then-log":  # what an honest sandbox sends
        host.mask(VALUE)
        host.mask(VALUE)  # again: the parent keeps it once
        host.log("info", "token " + VALUE)
    elif behaviour.startswith("mask-then-bad:"):  # one good mask, then a frame the sandbox would refuse
        host.mask(VALUE)
        bad = {
            "int": 12345,
            "list": [VALUE],
            "missing": None,
            "short": "abc",
            "huge": "m" * (MASK_MAX_BYTES + 1),
        }[behaviour.split(":", 1)[1]]
        host._sock.sendall(_frame({"op": "mask"} if bad is None else {"op": "mask", "value": bad}))
        host.log("info", "never read")
    elif behaviour == "mask-too-many":
        for i in range(MASKS_PER_RUN_MAX + 1):
            host.mask(f"derived-value-{i:04d}")
    elif behaviour == "mask-after-done":
        # A forged "done" and a mask frame in one write (a worker has no thread or timer to
        # speak later): the parent takes the run as finished, the mask comes after it, and
        # the worker's real "done" follows once this returns.
        done = {"op": "done", "status": "success", "result_json": '"forged"', "error": None, "cached": True}
        host._sock.sendall(_frame(done) + _frame({"op": "mask", "value": VALUE}))
    return RunOutcome("success", "null", None)
