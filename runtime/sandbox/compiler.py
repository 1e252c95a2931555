"""Deploy-time compilation: every problem of a function, each as `filename:LINE: message`.

Checks, all collected before `DeployError` is raised: source size and
nesting (`policy.parse_source`, which stops at the first failure since
nothing else can be checked), the entry point is a top-level `def`, its
parameters are context parts passable by name (no `*args`/`**kwargs`,
no positional-only), `secrets.X` / `secrets["X"]` / `secrets.get("X")`
literals name declared secrets, and the restricted policy.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard, cast

from store.errors import DeployError

from .context import CONTEXT_PARTS
from .modules import ALLOWED_MODULES, module_exports
from .policy import compile_tree, parse_source, problem, restrict

_LINE = re.compile(r"^.*?:(\d+): ")


@dataclass(frozen=True)
class CompiledFunction:
    code: types.CodeType  # RestrictedPython module code
    filename: str
    source_lines: tuple[str, ...]
    entry: str
    params: tuple[str, ...]  # parameter names of the entry, in order


def compile_function(
    source: str,
    *,
    filename: str = "function.py",
    entry: str = "main",
    declared_secrets: Sequence[str] = (),
    max_bytes: int,
    max_depth: int,
) -> CompiledFunction:
    """Compile a Logic function or raise `DeployError` listing every problem; the limits
    are the operator's `source_max_bytes` and `ast_max_depth`."""
    tree, problems = parse_source(source, filename, max_bytes, max_depth)
    if tree is None:
        raise DeployError(problems)
    params, problems = _check_entry(tree, filename, entry)
    problems += _check_secret_literals(tree, filename, tuple(declared_secrets))
    problems += _check_imports(tree, filename)
    problems += restrict(tree, filename)  # rewrites the tree: run after the checks above
    if problems:
        raise DeployError(_by_line(problems))
    code, problems = compile_tree(tree, filename)
    if code is None:
        raise DeployError(problems)
    # Line numbers count \n, \r\n and \r only (str.splitlines also splits on \f, \u2028, ...).
    lines = tuple(source.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return CompiledFunction(code, filename, lines, entry, params)


def _check_entry(tree: ast.Module, filename: str, entry: str) -> tuple[tuple[str, ...], list[str]]:
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == entry]
    if not defs:
        return (), [
            problem(filename, 1, f"entry point {entry!r} is not defined: add a top-level 'def {entry}(event):'")
        ]
    func = defs[-1]
    args = func.args
    problems: list[str] = []
    allowed = ", ".join(CONTEXT_PARTS)
    for stars, star in (("*", args.vararg), ("**", args.kwarg)):
        if star is not None:
            problems.append(
                problem(
                    filename,
                    func.lineno,
                    f"{entry}() cannot take {stars}{star.arg}: name the context parts it needs ({allowed})",
                )
            )
    for arg in args.posonlyargs:
        problems.append(
            problem(filename, func.lineno, f"parameter {arg.arg!r} of {entry}() is positional-only; remove the '/'")
        )
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    for name in names:
        if name not in CONTEXT_PARTS:
            problems.append(
                problem(
                    filename,
                    func.lineno,
                    f"parameter {name!r} of {entry}() is not a context part; choose from {allowed}",
                )
            )
    return tuple(names), problems


def _check_secret_literals(tree: ast.Module, filename: str, declared: tuple[str, ...]) -> list[str]:
    found: dict[tuple[int, str], None] = {}
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute) and _is_secrets(node.value) and node.attr != "get":
            name = node.attr
        elif isinstance(node, ast.Subscript) and _is_secrets(node.value) and _is_str(node.slice):
            name = cast(str, node.slice.value)  # _is_str
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_secrets(node.func.value)
            and node.args
            and _is_str(node.args[0])
        ):
            name = cast(str, node.args[0].value)  # _is_str
        if name is not None and name not in declared:
            found[(cast(ast.expr, node).lineno, name)] = None  # an Attribute, Subscript or Call
    listed = ", ".join(declared) or "none"
    return [
        problem(filename, line, f"secret {name!r} is not declared in the manifest (declared: {listed})")
        for line, name in found
    ]


def _check_imports(tree: ast.Module, filename: str) -> list[str]:
    """The import rules of `modules`, reported at deploy time with their lines."""
    allowed = ", ".join(ALLOWED_MODULES)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if module_exports(alias.name) is None:
                    problems.append(
                        problem(
                            filename,
                            node.lineno,
                            f"module {alias.name!r} is not available in Logic functions; allowed modules: {allowed}",
                        )
                    )
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(problem(filename, node.lineno, "relative imports are not allowed in Logic functions"))
                continue
            exports = module_exports(node.module or "")
            if exports is None:
                problems.append(
                    problem(
                        filename,
                        node.lineno,
                        f"module {node.module!r} is not available in Logic functions; allowed modules: {allowed}",
                    )
                )
                continue
            for alias in node.names:
                if alias.name != "*" and alias.name not in exports:
                    problems.append(
                        problem(
                            filename,
                            node.lineno,
                            f"cannot import {alias.name!r} from {node.module!r}: not available in Logic functions",
                        )
                    )
    return problems


def _is_secrets(node: ast.AST) -> bool:
    """`secrets`, or `logic.get_context().secrets` (the same accessor, reached through the context)."""
    if isinstance(node, ast.Name):
        return node.id == "secrets"
    if not (isinstance(node, ast.Attribute) and node.attr == "secrets" and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    return (isinstance(func, ast.Name) and func.id == "get_context") or (
        isinstance(func, ast.Attribute) and func.attr == "get_context"
    )


def _is_str(node: ast.AST) -> TypeGuard[ast.Constant]:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _by_line(problems: list[str]) -> list[str]:
    def line(text: str) -> int:
        match = _LINE.match(text)
        return int(match.group(1)) if match else 0

    return sorted(problems, key=line)
