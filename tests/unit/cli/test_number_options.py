"""Every number option refuses nonsense (zero or negative seconds, nan, inf) as a usage error: exit 2, one message,
nothing run."""

from __future__ import annotations

import pytest

from console.cli import main


@pytest.mark.parametrize("argv", [
    ["--timeout", "{v}", "engines"],  # before the command
    ["engines", "--timeout", "{v}"],  # after it
    ["--timeout", "{v}"],  # the TUI
    ["probe", "http://127.0.0.1:9", "m", "--request-timeout", "{v}"],
])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e999", "soon", "0.0"])
def test_seconds_must_be_a_finite_number_above_zero(argv, value, capsys):
    with pytest.raises(SystemExit) as done:
        main([a.format(v=value) for a in argv])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("enginedeck")
    assert ("not a number" if value == "soon" else f"not '{value}'") in err


@pytest.mark.parametrize("option, value", [("--temperature", "nan"), ("--temperature", "-0.5"),
                                           ("--top-p", "1.5"), ("--top-p", "inf"), ("--keep-alive", "nan")])
def test_other_number_options_refuse_what_no_engine_means(option, value, capsys):
    command = ["load"] if option == "--keep-alive" else ["chat"]
    argv = [*command, "http://127.0.0.1:9", "m", *(["hi"] if command == ["chat"] else [])]
    with pytest.raises(SystemExit) as done:
        main([*argv, option, value])
    assert done.value.code == 2 and f"argument {option}" in capsys.readouterr().err


def test_a_small_positive_timeout_is_taken(cli, capsys):
    # 0.2 s against a port where nothing listens: a clean failure of the command, not a usage error.
    assert cli("models", "http://127.0.0.1:9", "--timeout", "0.2") == 1
    assert "usage" not in capsys.readouterr().err
