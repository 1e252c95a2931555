"""The sandbox: compile and run Logic functions under RestrictedPython (worker side).

    policy        which source is accepted (size, nesting, restricted syntax)
    compiler      compile_function: every deploy problem with its line
    guards        the rewritten code's guards, builtins, the write rule
    modules       import facades over an allowlist of pure modules
    logic_module  the `logic` module: publish, log, get_context, encoding helpers
    cbor_module   the `cbor` module: bounded CBOR decode/encode for device payloads
    context       context records and the secrets accessor
    output        run log and events, with their limits
    results       exact-JSON serialisation of results and event data
    tracebacks    errors showing the author's own lines only
    executor      run_function: one run, fresh globals, an outcome
    testing       RecordingHost, the Host test double

Imports nothing from `store` except `store.errors`.
"""

from .compiler import CompiledFunction, compile_function
from .context import SecretAccessError, SecretNotDeclared
from .executor import Host, RunLimits, RunOutcome, run_function
from .modules import ALLOWED_MODULES
from .output import PublishLimitError

__all__ = [
    "ALLOWED_MODULES",
    "CompiledFunction",
    "Host",
    "PublishLimitError",
    "RunLimits",
    "RunOutcome",
    "SecretAccessError",
    "SecretNotDeclared",
    "compile_function",
    "run_function",
]
