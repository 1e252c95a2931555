"""Webhook templates: Mustache, parsed by pystache, rendered here over JSON data only.

Every configurable field is a template with the whole of Mustache that
Particle's webhooks use: `{{x}}` (HTML-escaped: & < > " '), `{{{x}}}` and
`{{& x}}` (as is), dotted and array paths (`{{a.b}}`, `{{c.0.d}}`), sections
(`{{#x}}..{{/x}}`: once for a value, for each item of a list, not at all
for a falsy one), inverted sections (`{{^x}}..{{/x}}`), `{{.}}` inside a
section, and comments. What a name means is a `Namespace`: the predefined
variables, the declared secrets, and the JSON data (an event's, or a
response's) for every other name.

Refused when the template is compiled, because a template is configuration
and not a program: partials (`{{> x}}` reads a file in most Mustache
engines), set-delimiter tags (`{{=<% %>=}}` only serves to hide tags from a
reader), unclosed tags, and sections nested deeper than SECTION_DEPTH_MAX.
`problems` then applies the policy for secrets and reserved names.

Why pystache parses but does not render: its renderer calls callables,
getattr()s objects and renders a lambda's result as a template again; here
values are JSON (dict, list, str, number, bool, None) looked up by key and
index only, and a value is written out once, never parsed. Rendering is
metered by a `Budget`: nested sections over a list multiply, so a 100 KiB
event could otherwise make a delivery thread write gigabytes.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pystache import parser as _pystache

from store.errors import TooLarge
from store.secrets import NAME_PATTERN

SECTION_DEPTH_MAX = 16  # sections inside sections; the renderer recurses once per level
_NAME = re.compile(r"[^\s.{}]+(?:\.[^\s.{}]+)*")  # dot-separated parts: keys or list indexes
_KINDS = {
    _pystache._EscapeNode: "variable",
    _pystache._LiteralNode: "raw",
    _pystache._SectionNode: "section",
    _pystache._InvertedNode: "inverted",
}
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")  # a list index as JavaScript spells it ("01" is no index)
_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})
_SHOWN = {"variable": "{{%s}}", "raw": "{{{%s}}}", "section": "{{#%s}}", "inverted": "{{^%s}}"}


@dataclass(frozen=True)
class Tag:
    kind: str  # "variable" {{x}}, "raw" {{{x}}} or {{& x}}, "section" {{#x}}, "inverted" {{^x}}
    name: str
    depth: int  # how many sections it is inside

    @property
    def parts(self) -> list[str]:
        return [self.name] if self.name == "." else self.name.split(".")

    def __str__(self) -> str:
        return _SHOWN[self.kind] % self.name


@dataclass(frozen=True)
class Template:
    source: str
    nodes: tuple[Any, ...] = field(repr=False)  # pystache's parse tree: str and its node objects
    tags: tuple[Tag, ...]  # every tag, sections' contents included
    parts: tuple[str | Tag, ...]  # the top level in order: literal text and tags (the url check reads it)


class _Parser(_pystache._Parser):
    """pystache's parser with one change to its tag regex, so parsing stays linear.

    Threat: its regex opens with `[ \\t]*` before `{{`, tried at every position, so a run of
    n spaces costs n*n/2 steps (16,000 spaces: 2 s). Anchored to the start of a run it
    matches the same tags."""

    _LEADING = r"(?P<whitespace>[\ \t]*)"
    _ANCHORED = r"(?P<whitespace>(?<![\ \t])[\ \t]*)"

    def _compile_delimiters(self) -> None:
        pattern = _pystache._compile_template_re(self._delimiters).pattern
        if pattern.count(self._LEADING) != 1:  # a pystache upgrade changed it: fail closed
            raise RuntimeError("pystache's tag pattern changed: review runtime/integrations/templates.py")
        self._template_re = re.compile(pattern.replace(self._LEADING, self._ANCHORED), re.VERBOSE)


def _prescan(source: str) -> None:
    """Every `{{` closed, and no set-delimiter tag, checked in one pass before pystache sees it.

    Threat: pystache's regex scans to the end of the line or text from each `{{` it cannot
    close, so 32 KB of `{{` cost 35 s; with a closer after every opener each tag ends there."""
    pos = 0
    while (start := source.find("{{", pos)) != -1:
        end = source.find("}}", start + 2)
        if end == -1:
            raise ValueError(f"invalid template: the tag at character {start + 1} is not closed with }}}}")
        inner = source[start + 2 : end].lstrip()
        if inner.startswith("="):
            raise ValueError("set-delimiter tags ({{=<% %>=}}) are not supported")
        if inner.startswith("{"):  # {{{x}}}: its raw form scans for a third brace
            if source.startswith("}}}", end):
                end += 1
            elif not inner.rstrip().endswith("}"):
                raise ValueError(f"invalid template: the tag at character {start + 1} is not closed with }}}}}}")
        pos = end + 2


def _unclosed(source: str) -> str:
    """The outermost section left open (for the message only)."""
    stack = []
    for match in re.finditer(r"\{\{\s*([#^/])\s*(.*?)\s*\}\}", source):
        if match[1] != "/":
            stack.append(f"{{{{{match[1]}{match[2]}}}}}")
        elif stack:
            stack.pop()
    return stack[0] if stack else "a section"


@functools.lru_cache(maxsize=512)
def compile_template(source: str) -> Template:
    """The parsed template; ValueError (saying what is wrong) for anything refused."""
    _prescan(source)
    try:
        tree = _Parser(None, raise_on_mismatch=True).parse(source)
    except _pystache.ParsingError as exc:
        if str(exc).startswith("Did not find"):  # its details name the wrong tag when sections nest
            raise ValueError(f"invalid template: {_unclosed(source)} is not closed") from None
        raise ValueError(f"invalid template: {' '.join(str(exc).split())}") from None
    tags: list[Tag] = []
    nodes = tuple(tree._parse_tree)
    parts = tuple(_walk(nodes, 0, tags))
    return Template(source, nodes, tuple(tags), parts)


def _walk(nodes: tuple[Any, ...] | list[Any], depth: int, tags: list[Tag]) -> Iterator[str | Tag]:
    """Check every node (an unknown kind is refused), collect the tags, yield the top level."""
    if depth > SECTION_DEPTH_MAX:
        raise ValueError(f"sections are nested more than {SECTION_DEPTH_MAX} deep")
    for node in nodes:
        if isinstance(node, str):
            yield node
            continue
        if isinstance(node, _pystache._CommentNode):
            continue
        if isinstance(node, _pystache._PartialNode):
            raise ValueError(f"partials ({{{{> {node.key}}}}}) are not supported")
        kind = _KINDS.get(type(node))
        if kind is None:  # a kind this module has not reviewed (a set-delimiter tag, a new one)
            raise ValueError(f"unsupported template tag {type(node).__name__.strip('_')}")
        if node.key != "." and not _NAME.fullmatch(node.key):
            raise ValueError(f"{_SHOWN[kind] % node.key!r} is not a valid name (parts separated by dots)")
        tag = Tag(kind, node.key, depth)
        tags.append(tag)
        if kind == "section":
            list(_walk(node.parsed._parse_tree, depth + 1, tags))
        elif kind == "inverted":
            list(_walk(node.parsed_section._parse_tree, depth + 1, tags))
        yield tag


def template_names(source: str) -> list[str]:
    """The first part of every name the template uses (ValueError if it does not compile)."""
    return [tag.parts[0] for tag in compile_template(source).tags if tag.name != "."]


# the policy -------------------------------------------------------------------------------


def problems(
    template: Template,
    *,
    secrets: Collection[str],
    predefined: Collection[str],
    secrets_allowed: bool = True,
    reserved_from_data: bool = False,
    env: bool = False,
) -> list[str]:
    """What `template` may not do with these declared secrets and predefined variables.

    A secret is a plain variable only: never a section (it would be iterable, and an
    inverted one tells whether it is empty), never the start of a path (`{{K.0}}`) nor a
    part of one (`{{x.K}}` would read event data under the secret's name). Unless
    `reserved_from_data` (a response template, where no secret is allowed), a name in
    secret-name syntax must be a declared secret or a predefined variable: a typo'd
    secret would otherwise send an empty credential, or one the publisher chose. With
    `env` (the spec's `use_env`), such a name is an environment variable instead: a
    plain variable too (the service checks that it exists)."""
    found = []
    for tag in template.tags:
        parts = tag.parts
        if tag.name == ".":
            if tag.depth == 0:
                found.append(f"{tag}: '.' means the current item, so it is only used inside a section")
            continue
        secret = next((p for p in parts if p in secrets), None)
        if secret is not None:
            if not secrets_allowed:
                found.append(f"{tag}: secrets cannot be used here (what this field renders is published)")
            elif tag.kind in ("section", "inverted"):
                found.append(f"{tag}: {secret} is a secret: a plain variable only, never a section")
            elif len(parts) > 1 and parts[0] == secret:
                found.append(f"{tag}: {secret} is a secret: it has no fields or items")
            elif len(parts) > 1:
                found.append(f"{tag}: {secret} is a declared secret, so it cannot name a field of the data")
        elif parts[0] in predefined:
            if len(parts) > 1:
                found.append(f"{tag}: {parts[0]} is text: it has no fields or items")
        elif env and NAME_PATTERN.fullmatch(parts[0]) and not reserved_from_data:
            if tag.kind in ("section", "inverted") or len(parts) > 1:
                found.append(f"{tag}: {parts[0]} is an environment variable: a plain variable only")
        elif NAME_PATTERN.fullmatch(parts[0]) and not reserved_from_data:
            name = parts[0]
            found.append(
                f"{{{{{{{name}}}}}}} is neither a declared secret nor an event variable: "
                f'add {name} to "secrets" (names in secret-name syntax are reserved)'
            )
    return found


# rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """What the names in a template mean for one render.

    Order of lookup: a declared secret, then a predefined variable (neither can be
    shadowed by data, inside a section or not), then the data by Mustache's rules."""

    data: Any = field(default_factory=dict)  # decoded JSON: the root the other names are looked up in
    variables: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict)  # the environment variables the spec uses
    reserved_from_data: bool = False  # response templates: an all-caps name may be a response field


class Budget:
    """Characters (and steps) the renders of one request or response may take, shared by all of them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.left = limit

    def charge(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise TooLarge(f"the templates rendered more than {self.limit} characters")


def render(source: str, namespace: Namespace, budget: Budget) -> str:
    """Render once: values are written out as text and never parsed as templates."""
    if "{{" not in source:
        budget.charge(len(source))
        return source
    out: list[str] = []
    _render(compile_template(source).nodes, [namespace.data], namespace, budget, out)
    return "".join(out)


def render_json(value: Any, namespace: Namespace, budget: Budget) -> Any:
    """A JSON template: every string in it, keys included, is rendered; other values stay."""
    if isinstance(value, str):
        return render(value, namespace, budget)
    if isinstance(value, dict):
        return {render(k, namespace, budget): render_json(v, namespace, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, namespace, budget) for v in value]
    return value


def _render(nodes: Any, stack: list[Any], ns: Namespace, budget: Budget, out: list[str]) -> None:
    for node in nodes:
        budget.charge(1)  # a step, so that loops writing nothing are bounded too
        if isinstance(node, str):
            text = node
        elif type(node) is _pystache._EscapeNode:
            text = escape_html(to_text(_lookup(node.key, stack, ns)))
        elif type(node) is _pystache._LiteralNode:
            text = to_text(_lookup(node.key, stack, ns))
        elif type(node) is _pystache._SectionNode:
            value = _lookup(node.key, stack, ns, section=True)
            for item in value if isinstance(value, list) else [] if _falsy(value) else [value]:
                budget.charge(1)  # an iteration: an empty section body costs its loop too
                stack.append(item)
                _render(node.parsed._parse_tree, stack, ns, budget, out)
                stack.pop()
            continue
        elif type(node) is _pystache._InvertedNode:
            if _falsy(_lookup(node.key, stack, ns, section=True)):
                _render(node.parsed_section._parse_tree, stack, ns, budget, out)
            continue
        else:  # a comment; compile_template refused every other kind
            continue
        budget.charge(len(text))
        out.append(text)


def _lookup(name: str, stack: list[Any], ns: Namespace, *, section: bool = False) -> Any:
    """The value of `name`; None when it names nothing."""
    if name == ".":
        return stack[-1] if len(stack) > 1 else None  # the root is the whole namespace, never a value
    first, *rest = name.split(".")
    if first in ns.secrets:
        # Threat: a secret as a section or a path would be iterable or read from data.
        return ns.secrets[first] if not rest and not section else None
    if first in ns.variables:
        return ns.variables[first] if not rest else None
    if first in ns.env:
        return ns.env[first] if not rest and not section else None
    if NAME_PATTERN.fullmatch(first) and not ns.reserved_from_data:
        return None  # reserved for secrets and predefined variables: data never answers it
    for item in reversed(stack):
        found, value = _child(item, first)
        if found:
            break
    else:
        return None
    for part in rest:
        if part in ns.secrets:
            return None
        found, value = _child(value, part)
        if not found:
            return None
    return value


def _child(value: Any, key: str) -> tuple[bool, Any]:
    """A JSON object's member or a list's item by its index: nothing else is reachable."""
    if isinstance(value, dict):
        return (True, value[key]) if key in value else (False, None)
    if isinstance(value, list) and _INDEX.fullmatch(key) and int(key) < len(value):
        return True, value[int(key)]
    return False, None


def _falsy(value: Any) -> bool:
    """Mustache falsiness as mustache.js (Particle) has it: an empty object is truthy."""
    if isinstance(value, bool) or value is None:
        return not value
    if isinstance(value, (int, float)):
        return value == 0 or math.isnan(value)
    return value == "" or value == []


def to_text(value: Any) -> str:
    """A value as a variable writes it, as mustache.js does: lists joined with commas,
    numbers without a needless `.0`; an object as compact JSON (more use than `[object Object]`)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return ",".join(to_text(item) for item in value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def escape_html(text: str) -> str:
    """What `{{x}}` writes: the five characters Particle's reference names, escaped."""
    return text.translate(_HTML_ESCAPES)
