"""The restricted-Python policy: which source a Logic function may contain.

Source goes through three gates, each reporting `filename:LINE: message`:

1. size and shape (`parse_source`): at most `max_bytes` of UTF-8 and an AST
   at most `max_depth` deep, checked *before* RestrictedPython's recursive
   visitor or the compiler sees the tree (threat: a 100k-term `1+1+...` or
   deeply nested brackets crashing the host compiler or blowing its stack);
2. the policy (`LogicPolicy`): RestrictedPython's transformer, which rewrites
   attribute, item, iteration and print into calls to the guards and rejects
   unknown syntax by default, plus the few names this runtime forbids;
3. `compile` of the rewritten tree.

Policy is data: the forbidden attribute names are the frozenset below.
"""

from __future__ import annotations

import ast
import re
import types

from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

# Attributes never readable, whatever the object. The inspect names reach
# frames, code and their globals; str.format/format_map walk attributes of
# their arguments inside C, past the guard ("{0.__class__}".format(x)); mro()
# hands out `object`, the root of every subclass walk.
BLOCKED_ATTRIBUTES = frozenset(
    INSPECT_ATTRIBUTES
    | {
        "format",
        "format_map",
        "mro",
        "f_trace_lines",
        "f_trace_opcodes",
        "tb_lasti",
        "co_consts",
        "co_names",
    }
)

_BLOCKED_HINTS = {
    "format": "str.format can read attributes of its arguments; use an f-string or %",
    "format_map": "str.format_map can read attributes of its arguments; use an f-string or %",
}

_RP_LINE = re.compile(r"^Line (\d+|None): (.*)$", re.DOTALL)


class LogicPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus this runtime's forbidden attribute names.

    `match` statements stay refused (RestrictedPython has no visitor for them):
    class patterns read `__match_args__` and attributes without `_getattr_`.
    """

    def visit_Attribute(self, node: ast.Attribute):
        if node.attr in BLOCKED_ATTRIBUTES and node.attr not in INSPECT_ATTRIBUTES:
            hint = _BLOCKED_HINTS.get(node.attr, "it gives access to interpreter internals")
            self.error(node, f'"{node.attr}" is not allowed in Logic functions: {hint}.')
        return super().visit_Attribute(node)

    def visit_Name(self, node: ast.Name):
        if node.id == "printed" and isinstance(node.ctx, ast.Load):
            # RestrictedPython's collected-output variable: output goes to the run log here.
            self.error(node, '"printed" is not supported: print() output goes to the run log.')
        return super().visit_Name(node)


def problem(filename: str, line: int | None, message: str) -> str:
    return f"{filename}:{line or 1}: {message}"


def parse_source(source: str, filename: str, max_bytes: int, max_depth: int) -> tuple[ast.Module | None, list[str]]:
    """Parse within the size and depth limits; never raises for bad input."""
    if not isinstance(source, str):
        return None, [problem(filename, 1, "source must be text")]
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return None, [problem(filename, 1, f"source is {size} bytes; the limit is {max_bytes} bytes")]
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        return None, [problem(filename, exc.lineno, f"syntax error: {exc.msg}")]
    except ValueError as exc:  # e.g. null bytes in the source
        return None, [problem(filename, 1, f"syntax error: {exc}")]
    except (RecursionError, MemoryError):
        # CPython's own guards against absurd nesting (parser stack, AST construction).
        return None, [
            problem(
                filename,
                1,
                f"code is too deeply nested to compile (limit: depth {max_depth}); "
                "split long expressions or nested structures",
            )
        ]
    line = _first_too_deep(tree, max_depth)
    if line is not None:
        return None, [
            problem(
                filename,
                line,
                f"code is nested too deeply (limit: depth {max_depth}); split long expressions or nested structures",
            )
        ]
    return tree, []


def _first_too_deep(tree: ast.AST, max_depth: int) -> int | None:
    """Line of the first node deeper than max_depth, found without recursion."""
    stack = [(tree, 1, 1)]
    while stack:
        node, depth, line = stack.pop()
        line = getattr(node, "lineno", None) or line
        if depth > max_depth:
            return line
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)):
                stack.append((child, depth + 1, line))
    return None


def restrict(tree: ast.Module, filename: str) -> list[str]:
    """Apply the policy to `tree` in place; returns every violation found."""
    errors: list[str] = []
    try:
        LogicPolicy(errors, [], {}).visit(tree)
    except RecursionError:  # cannot happen below max_depth, kept as a backstop
        return [problem(filename, 1, "code is nested too deeply to check")]
    out = []
    for error in errors:
        match = _RP_LINE.match(error)
        if match:
            line = None if match.group(1) == "None" else int(match.group(1))
            out.append(problem(filename, line, match.group(2)))
        else:
            out.append(problem(filename, 1, error))
    return out


def compile_tree(tree: ast.Module, filename: str) -> tuple[types.CodeType | None, list[str]]:
    """Compile a restricted tree; the compiler's own checks become problems."""
    try:
        # dont_inherit: never pick up this module's `from __future__` flags.
        return compile(tree, filename, "exec", dont_inherit=True), []
    except SyntaxError as exc:
        return None, [problem(filename, exc.lineno, f"syntax error: {exc.msg}")]
    except (RecursionError, MemoryError, ValueError) as exc:
        return None, [problem(filename, 1, f"cannot compile: {type(exc).__name__}")]
