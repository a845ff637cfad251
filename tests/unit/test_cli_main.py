"""main()'s error funnel: a bug in a command (no real component can be made to have one on
purpose, so a command is replaced here) still ends in one line, exit 1."""

from __future__ import annotations


def test_an_unforeseen_error_is_one_line_too(monkeypatch, capsys):
    """A bug still ends in one line, naming the exception and how to see the traceback."""
    from agentflux import cli as cli_module

    def broken(args):
        raise KeyError("oops")

    monkeypatch.setattr(cli_module, "cmd_down", broken)
    monkeypatch.delenv("AGENTFLUX_DEBUG", raising=False)
    assert cli_module.main(["down"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("agentflux: error: KeyError: 'oops'") and "--debug" in err
