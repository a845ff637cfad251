"""What `agentflux` tells a user who asks: its version, its commands in the order they are
needed, and for every option what it does and its default."""

from __future__ import annotations

import importlib.metadata
import re

import pytest

from agentflux.cli import build_parser, main

ORDER = ["up", "demo", "simulate", "worker", "status", "pool-manager", "sql", "history", "replay", "whatif",
         "report",
         "down", "bench"]


def subcommands() -> dict:
    ap = build_parser()
    return next(a for a in ap._actions if a.dest == "command").choices


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"agentflux {importlib.metadata.version('agentflux')}\n"


def test_version_when_not_installed(capsys, monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == "agentflux unknown\n"


def test_no_arguments_lists_the_commands_in_order_and_exits_0(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["agentflux"])
    assert main() == 0
    text = capsys.readouterr().out
    listed = re.findall(r"^    ([\w-]+)  +\S", text, re.MULTILINE)  # name, then its one-line help
    assert listed == ORDER
    assert "agentflux COMMAND --help" in text


def test_every_command_is_in_the_overview():
    assert sorted(subcommands()) == sorted(ORDER)


def option_help(help_text: str, option: str) -> str:
    """The entry of ``option`` in a --help text, its lines joined."""
    entry, lines = None, []
    for line in help_text.splitlines():
        if re.match(r"  \S", line) or not line.strip():  # the next entry, or a section's end
            if entry is not None:
                break
            if re.match(rf"  {re.escape(option)}(?=[ ,]|$)", line):
                entry = line
        if entry is not None:
            lines.append(line)
    assert lines, f"{option} is not in the help"
    return " ".join(" ".join(lines).split())


@pytest.mark.parametrize("name", ORDER)
def test_every_option_has_help_and_shows_its_default(name):
    parser = subcommands()[name]
    help_text = parser.format_help()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"agentflux {name}: {action.dest} has no help"
        if not action.option_strings:
            continue
        entry = option_help(help_text, action.option_strings[0])
        default = action.default
        if default is None or default is False:
            assert "(default: None)" not in entry and "(default: False)" not in entry
        else:
            shown = f"{default:,}" if isinstance(default, int) else str(default)
            assert entry.endswith(f"(default: {shown})"), entry
