"""The `ctrip` command line: plug-in commands and error reporting."""

from __future__ import annotations

import pytest

from ctrip import cli


def test_a_command_that_cannot_import_reports_why(monkeypatch, capsys) -> None:
    commands = [*cli.COMMANDS, (("broken",), "ctrip.no_such_module", "a broken command")]
    monkeypatch.setattr(cli, "COMMANDS", commands)
    assert cli.main(["broken", "--any", "option"]) == 2
    err = capsys.readouterr().err
    assert "`ctrip broken` is unavailable" in err and "ctrip.no_such_module" in err


def test_unknown_options_of_a_working_command_are_refused(tiny_cohort) -> None:
    with pytest.raises(SystemExit):
        cli.main(["cohort", "validate", str(tiny_cohort), "--bogus"])


def test_debug_shows_the_traceback(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CTRIP_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.main(["cohort", "validate", str(tmp_path)])
