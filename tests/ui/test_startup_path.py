"""What opening the TUI may import before its first frame (docs/performance.md): no command module, no engine
adapter, no DataTable. Each check runs in a fresh interpreter, where sys.modules shows what was imported."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys

import pytest

from console.cli import main


def imported_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_opening_the_tui_parses_without_the_command_modules():
    tui = imported_after("from console.cli import parse_args; parse_args(['--no-discover', '--engine', 'x'])")
    assert not {m for m in tui if m.startswith("console.commands.")}
    command = imported_after("from console.cli import parse_args; parse_args(['ps', '--json'])")
    assert {"console.commands.fleet", "console.commands.probe"} <= command


def test_the_first_frame_needs_no_engine_module_and_no_table():
    modules = imported_after("import console.ui.app, console.ui.screens.dashboard")
    assert not {m for m in modules if m.startswith("console.engines.")}
    assert "textual.widgets._data_table" not in modules
    assert "httpx" not in modules


@pytest.mark.parametrize("argv", [["--version"], ["--no-such-option"], ["ps", "--no-discover", "--json"]])
def test_main_leaves_the_garbage_collector_on(argv, capsys):
    with contextlib.suppress(SystemExit):
        main(argv)
    assert gc.isenabled()
