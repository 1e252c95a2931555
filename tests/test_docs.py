"""The docs keep up with the code: every CLI command has help text and a README entry."""

from __future__ import annotations

from pathlib import Path

import click

from runtime.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


def test_every_command_has_help_and_a_readme_entry():
    missing_help, missing_docs = [], []
    for path, command in commands(cli):
        if not (command.help or "").strip():
            missing_help.append(" ".join(path))
        if isinstance(command, click.Group):
            continue
        parent, leaf = path[:-1], path[-1]
        # Documented either spelled out ("logic tokens revoke") or in a `a|b|c` list after its group.
        spelled = "logic " + " ".join(path)
        listed = any(line.startswith("| `logic " + " ".join(parent)) and leaf in line for line in README.splitlines())
        if spelled not in README and not listed:
            missing_docs.append(spelled)
    assert not missing_help, f"commands without help: {missing_help}"
    assert not missing_docs, f"commands missing from README.md: {missing_docs}"
