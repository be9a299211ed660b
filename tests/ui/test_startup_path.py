"""What opening the TUI may import before its first frame (docs/performance.md): no command module, no engine
adapter, no DataTable. Each check runs in a fresh interpreter, where sys.modules shows what was imported."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys

import pytest

from console.cli import main
from console.ui.app import GC_YOUNG_THRESHOLD
from tests.ui.fixtures import demo_app, settle


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


# What `enginedeck` has imported when the first engine row goes to the terminal: it runs the real entry point
# (console.cli.main) to the moment console/ui/start.py writes the rows, and stops there.
FIRST_ROWS = """
import io, sys
import console.ui.start as start

written = io.StringIO()
real_paint = start.paint_first_rows


def paint(terminal, first, **kwargs):
    real_paint(written, first, ascii_mode=True, size=(80, 24))
    print("\\n".join(sorted(sys.modules)))
    print("ROWS " + repr(written.getvalue()))
    sys.stdout.flush()
    raise SystemExit(0)


start.paint_first_rows = paint
start._paints_here = lambda terminal: True
from console.cli import main

main(sys.argv[1:])
print("NO ROWS")
"""


def test_the_first_engine_row_needs_no_textual_no_official_client_no_metrics_parser_no_store(tmp_path, ollama_server):
    env = {**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data"), "ENGINEDECK_CONFIG": str(tmp_path / "c.toml")}
    (tmp_path / "c.toml").write_text("")
    out = subprocess.run([sys.executable, "-c", FIRST_ROWS, "--no-discover", "--engine", ollama_server.url],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    *modules, rows = out.stdout.split("\n")[:-1]
    assert rows.startswith("ROWS ") and "0.12.6" in rows and ollama_server.url.removeprefix("http://") in rows
    loaded = set(modules)
    for heavy in ("textual", "rich", "ollama", "pydantic", "prometheus_client", "aiosqlite", "sqlite3", "psutil",
                  "pynvml", "console.store.db", "click"):
        assert heavy not in loaded, heavy
    assert not {m for m in loaded if m.startswith(("textual.", "rich.", "console.commands.fleet"))}


async def test_once_started_the_collector_runs_young_collections_less_often_and_is_restored_on_exit(tmp_path):
    """The app's garbage-collector policy (console/ui/app.py): after the first paint, a young generation of
    GC_YOUNG_THRESHOLD objects; once the store and the first refresh are done, start-up's objects frozen out of
    every later full collection. Another app in the same process starts from the thresholds it found."""
    before = gc.get_threshold()
    app = demo_app(tmp_path)
    async with app.run_test() as pilot:
        await settle(pilot, until=lambda: not app._start_work)
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0 and gc.isenabled()
    assert gc.get_threshold() == before
