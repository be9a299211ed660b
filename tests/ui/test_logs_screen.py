"""The logs screen: panes per configured engine log plus the audit trail, following, level and regex filters,
search next/previous, pause/follow, layout, raw lines, a command pane, hostile lines and signature marks; a pane
of every source kind opened, closed and reopened by keys; Esc out of the field; paused while hidden; 80x24."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from textual import events
from textual.widgets import Input

from console.audit.mark import Mark
from console.config import EngineConfig
from console.logs.line import Level
from console.ui.app import EngineDeckApp
from console.ui.screens.logs import LogsScreen
from console.ui.widgets.dialogs import TextDialog
from console.ui.widgets.log_pane import LogPane, LogView
from tests.ui.fixtures import StubRegistry, TestContext, make_config, screen_text, settle

LOG = [
    'time=2026-11-22T06:50:01Z level=INFO source=routes.go:1 msg="Listening on 127.0.0.1:11434"',
    'time=2026-11-22T06:50:02Z level=WARN source=gpu.go:2 msg="no compatible GPUs"',
    'time=2026-11-22T06:50:03Z level=ERROR source=sched.go:3 msg="error loading model"',
    'time=2026-11-22T06:50:04Z level=INFO source=routes.go:4 msg="request served"',
]


def app_for(tmp_path, log_path, name="ollama"):
    engines = [EngineConfig(name=name, url="http://127.0.0.1:9", kind="ollama", log_file=log_path)]
    return EngineDeckApp(TestContext(make_config(tmp_path, engines=engines), StubRegistry([])))


def row_texts(view: LogView) -> list[str]:
    return [line.text for line in view.shown]


def rendered(view: LogView) -> list[str]:
    return [view.render_line(y).text for y in range(view.size.height)]


async def open_logs(pilot):
    await pilot.press("5")
    await settle(pilot, until=lambda: len(pilot.app.screen.query(LogPane)) == 2
                 and len(pilot.app.screen.query(LogPane).first().view.shown) >= 4)
    return pilot.app.screen


async def test_panes_follow_filter_search_and_layout(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_logs(pilot)
        panes = list(screen.query(LogPane))
        assert [p.label for p in panes] == [str(log), "audit:"]
        view = panes[0].view
        view.focus()
        await pilot.pause()
        assert row_texts(view)[0].startswith("Listening on")
        assert any("error loading model" in row for row in rendered(view))

        await pilot.press("v", "v")  # all → info → warn
        assert row_texts(view) == [LOG_TEXT[1], LOG_TEXT[2]]
        await pilot.press("v", "v")  # → error → all
        assert len(row_texts(view)) == 4

        await pilot.press("f")
        prompt = screen.query_one("#prompt", Input)
        assert prompt.has_focus
        prompt.value = "served|Listening"
        await pilot.press("enter")
        assert row_texts(view) == [LOG_TEXT[0], LOG_TEXT[3]]
        await pilot.press("f")
        prompt.value = ""
        await pilot.press("enter")

        await pilot.press("slash")
        prompt.value = "gpu|model"
        await pilot.press("enter")
        assert view.cursor == 1 and not view.follow
        await pilot.press("n")
        assert view.cursor == 2
        await pilot.press("N")
        assert view.cursor == 1

        await pilot.press("G")  # back to following the end
        assert view.follow
        with log.open("a") as f:
            f.write('time=2026-11-22T06:50:05Z level=INFO msg="appended"\n')
        await settle(pilot, until=lambda: row_texts(view)[-1] == "appended")
        await pilot.press("p")
        assert not view.follow

        await pilot.press("l")
        assert screen.query_one("#panes").has_class("-stacked")
        await pilot.press("r")
        assert view.raw and any("level=INFO" in row for row in rendered(view))


LOG_TEXT = ["Listening on 127.0.0.1:11434  source=routes.go:1", "no compatible GPUs  source=gpu.go:2",
            "error loading model  source=sched.go:3", "request served  source=routes.go:4"]


async def test_command_pane_hostile_lines_and_close(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_logs(pilot)
        await pilot.press("o")
        code = "print('\\x1b]52;c;ZXZpbA==\\x07evil \\x1b[2J[link=x]y[/link]'); raise SystemExit(3)"
        screen.query_one("#prompt", Input).value = f'cmd:{sys.executable} -c "{code}"'
        await pilot.press("enter")
        await settle(pilot, until=lambda: len(screen.query(LogPane)) == 3
                     and any("exited with code 3" in t for t in row_texts(list(screen.query(LogPane))[-1].view)))
        pane = list(screen.query(LogPane))[-1]
        await settle(pilot, until=lambda: pane.state == "ended")
        await pilot.press("l")  # stacked: every pane in view, each the full width
        await pilot.pause()
        rows = rendered(pane.view)
        assert any("evil [link=x]y[/link]" in row for row in rows)
        assert not any("\x1b" in row or "\x07" in row for row in rows)
        await pilot.press("x")
        await pilot.pause()
        assert len(screen.query(LogPane)) == 2


async def test_audit_pane_marks_records(tmp_path):
    from console.audit.trail import AuditTrail

    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    trail = AuditTrail.for_config(app.ctx.config, None)
    await trail.record("load", engine="ollama", target="llama3", params={}, result="ok", duration_s=1.0)
    path = trail.path
    path.write_text(path.read_text() + path.read_text().replace('"llama3"', '"forged"'))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await settle(pilot, until=lambda: len(pilot.app.screen.query(LogPane)) == 2
                     and len(list(pilot.app.screen.query(LogPane))[1].view.shown) == 2)
        view = list(pilot.app.screen.query(LogPane))[1].view
        assert [line.mark for line in view.shown] == [Mark.VALID, Mark.INVALID]


async def test_older_lines_are_read_back_from_the_file(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"level=INFO msg=line{i}\n" for i in range(1200)))
    app = app_for(tmp_path, log)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await settle(pilot, until=lambda: len(pilot.app.screen.query(LogPane)) == 2
                     and len(pilot.app.screen.query(LogPane).first().view.shown) == 500)
        view = pilot.app.screen.query(LogPane).first().view
        view.focus()
        assert view.shown[0].text == "line700"
        await pilot.press("b")
        await settle(pilot, until=lambda: len(view.shown) == 1200)
        assert [view.shown[i].text for i in (0, 699, 700, 1199)] == ["line0", "line699", "line700", "line1199"]
        assert not view.follow and view.scroll_y >= 700 - view.size.height  # still looking at the same rows
        with log.open("a") as f:
            f.write("level=INFO msg=after\n")
        await settle(pilot, until=lambda: view.shown[-1].text == "after")
        assert pilot.app.screen.focused_pane().load_older() == "this is the start of the file"


def panes_of(pilot) -> list[LogPane]:
    return list(pilot.app.screen.query(LogPane))


async def type_into_prompt(pilot, key: str, text: str) -> Input:
    await pilot.press(key)
    prompt = pilot.app.screen.query_one("#prompt", Input)
    assert prompt.has_focus
    await pilot.press(*text)
    return prompt


def fake_journalctl(tmp_path, monkeypatch) -> None:
    sample = Path(__file__).parents[1] / "fakes" / "journal_samples" / "ollama.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "journalctl"
    fake.write_text(f"#!/bin/sh\ncat {sample}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")


SOURCES = {  # what is typed at `o` (in the test's directory), and a piece of text the pane then shows
    "file": ("ollama.log", "request served"),
    "engine": ("engine:ollama", "request served"),
    "journal": ("journal:ollama", "Listening on"),
    "cmd": ("cmd:echo hello", "hello"),
    "audit trail": ("audit:", "does not exist; waiting for it"),
}


@pytest.mark.parametrize("kind", SOURCES)
async def test_open_close_and_reopen_a_pane_of_each_kind_by_keys(tmp_path, monkeypatch, kind):
    """5, o, the source, enter: a pane (before, a traceback: its view was focused before it existed); x closes it;
    the same again opens it anew."""
    fake_journalctl(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    typed, shows = SOURCES[kind]
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        for _ in range(2):
            await type_into_prompt(pilot, "o", typed)
            await pilot.press("enter")
            await settle(pilot, until=lambda: len(panes_of(pilot)) == 3)
            pane = panes_of(pilot)[-1]
            await settle(pilot, until=lambda pane=pane: any(shows in line.text for line in pane.view.lines))
            assert app.screen.focused is pane.view and pane.display  # the new pane is the one shown
            await pilot.press("x")
            await settle(pilot, until=lambda: len(panes_of(pilot)) == 2)
        assert app.is_running and isinstance(app.screen, LogsScreen)


async def test_a_source_that_cannot_be_opened_says_why_and_the_screen_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        (tmp_path / "d").mkdir()
        for typed, said in [("audit:x", "needs its key"), ("engine:x", "no engine named 'x'"),
                            ("cmd:", "nothing after cmd:"), ("d", "is a directory")]:
            await type_into_prompt(pilot, "o", typed)
            await pilot.press("enter")
            await settle(pilot, until=lambda said=said: any(said in str(n.message) for n in app._notifications)
                         or any(said in line.text for p in panes_of(pilot) for line in p.view.lines))
        assert app.is_running


async def test_escape_leaves_every_field_and_digits_then_switch_screens(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot)
        for key in ("o", "f", "slash"):
            prompt = await type_into_prompt(pilot, key, "q15")  # letters and digits are text while it is open
            assert prompt.value.endswith("q15") and isinstance(app.screen, LogsScreen)
            assert "esc Leave field" in screen_text(app).splitlines()[-1]
            await pilot.press("escape")
            assert not prompt.has_class("-open") and isinstance(screen.focused, LogView)
        await pilot.press("enter")  # the line in view, whole, in a dialog ...
        await settle(pilot, until=lambda: isinstance(app.screen, TextDialog))
        await pilot.press("escape")  # ... that Esc closes
        await settle(pilot, until=lambda: app.screen is screen)
        await pilot.press("1")
        await settle(pilot, until=lambda: app.current_mode == "dashboard")


async def test_a_hidden_screen_stops_reading_and_polling_and_catches_up_when_shown(tmp_path, monkeypatch):
    """Before, every pane kept a 20 Hz timer and a 4 Hz file poll after the user left the screen."""
    from console.logs import sources

    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    polls = 0
    real_change = sources._change

    def counting(*args):
        nonlocal polls
        polls += 1
        return real_change(*args)

    monkeypatch.setattr(sources, "_change", counting)
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot)
        view = panes_of(pilot)[0].view
        await settle(pilot, until=lambda: polls > 0)
        await pilot.press("1")
        await settle(pilot, until=lambda: app.current_mode == "dashboard")
        await pilot.pause(0.1)  # a poll in flight when the screen was left may finish
        panes = list(screen.query(LogPane))
        assert all(p.paused and p._flush_timer is None and not p.source._go.is_set() for p in panes)
        polls_hidden = polls
        with log.open("a") as f:
            f.write('time=2026-11-22T06:50:05Z level=INFO msg="while hidden"\n')
        deadline = time.monotonic() + 1.0  # four poll intervals
        while time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert polls == polls_hidden and all(line.text != "while hidden" for line in view.lines)
        await pilot.press("5")
        await settle(pilot, until=lambda: view.lines[-1].text == "while hidden")
        assert [line.lineno for line in view.lines] == [1, 2, 3, 4, 5]  # from where it stopped, nothing twice
        assert not any(p.paused for p in panes)


async def test_a_clean_exit_is_not_an_error_and_a_failed_one_is(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        for program, code, level in [("true", 0, Level.INFO), ("false", 1, Level.ERROR)]:
            await type_into_prompt(pilot, "o", f"cmd:{program}")
            await pilot.press("enter")
            await settle(pilot, until=lambda: panes_of(pilot)[-1].state == "ended")
            pane = panes_of(pilot)[-1]
            await settle(pilot, until=lambda pane=pane: bool(pane.view.lines))
            [ended] = pane.view.lines
            assert ended.level is level and f"exited with code {code}" in ended.text
            assert pane.status_text(76) == f"ended  1/1 lines  {program} exited with code {code}"
            await pilot.press("x")
            await settle(pilot, until=lambda: len(panes_of(pilot)) == 2)


async def test_one_pane_at_a_time_at_80_columns_side_by_side_when_wide(tmp_path):
    """At 80 columns two panes side by side had 36 columns each: now the shown one has the full width, a line
    names every pane (with ! on one with news), tab goes to the next, l cycles the layouts."""
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot)
        first, audit = panes_of(pilot)
        await pilot.pause()
        assert screen.layout_mode == "single" and first.display and not audit.display
        assert first.outer_size.width == 80 and first.view.size.height >= 17
        strip = screen_text(app).splitlines()[1]
        assert "1 ollama.log" in strip and "2 audit:" in strip and "tab: next pane" in strip
        await pilot.press("tab")
        await pilot.pause()
        assert audit.display and not first.display and screen.focused is audit.view
        await pilot.press("tab")
        await pilot.pause()
        assert first.display and screen.focused is first.view
        await pilot.press("l")  # stacked
        await pilot.pause()
        assert screen.layout_mode == "stacked" and first.display and audit.display and audit.outer_size.width == 80
        await pilot.press("l")  # side by side
        await pilot.pause()
        assert screen.layout_mode == "side" and first.outer_size.width == 40
    async with app_for(tmp_path, log).run_test(size=(160, 40)) as pilot:
        screen = await open_logs(pilot)
        await pilot.pause()
        assert screen.layout_mode == "side" and all(p.display and p.outer_size.width == 80 for p in panes_of(pilot))


async def test_the_pane_line_fits_six_panes_at_80_columns(tmp_path):
    log = tmp_path / "a-log-file-with-a-name-long-enough-to-matter.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        for _ in range(4):
            await type_into_prompt(pilot, "o", "cmd:true")
            await pilot.press("enter")
        await settle(pilot, until=lambda: len(panes_of(pilot)) == 6)
        await pilot.pause(0.1)
        strip = screen_text(app).splitlines()[1]
        assert all(f" {i} " in strip for i in range(1, 7)) and "…" not in strip.rstrip()[-2:], strip


async def test_news_in_a_pane_not_shown_is_marked_on_the_pane_line(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        await pilot.press("tab")  # the audit pane is shown; the log gets an error line
        await pilot.pause()
        with log.open("a") as f:
            f.write('time=2026-11-22T06:50:05Z level=ERROR msg="out of memory"\n')
        await settle(pilot, until=lambda: "1 ollama.log!" in screen_text(app).splitlines()[1])
        await pilot.press("tab")
        await settle(pilot, until=lambda: "1 ollama.log " in screen_text(app).splitlines()[1])


async def test_status_line_elides_a_long_path_and_enter_shows_the_whole_message(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    missing = tmp_path / "a-directory-with-a-rather-long-name" / "and-another-one-below-it" / "engine.log"
    app = app_for(tmp_path, log)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_logs(pilot)
        prompt = await type_into_prompt(pilot, "o", "")
        prompt.post_message(events.Paste(str(missing)))  # pasted, as a long path usually is
        await settle(pilot, until=lambda: prompt.value == str(missing))
        await pilot.press("enter")
        await settle(pilot, until=lambda: len(panes_of(pilot)) == 3 and panes_of(pilot)[-1].notice is not None)
        await pilot.pause(0.1)
        status = screen_text(app).splitlines()[3]
        assert status.startswith("│ waiting  1/1 lines  /")
        assert status.rstrip(" │").endswith("/engine.log does not exist; waiting for it") and "…" in status
        await pilot.press("enter")
        await settle(pilot, until=lambda: isinstance(app.screen, TextDialog))
        assert app.screen._body == f"{missing} does not exist; waiting for it"
        await pilot.press("escape")
        missing.parent.mkdir(parents=True)
        missing.write_text("now it exists\n")
        pane = panes_of(pilot)[-1]
        await settle(pilot, until=lambda: pane.view.lines[-1].text == "now it exists")
        await settle(pilot, until=lambda: pane.status_text(76) == "following  2/2 lines")


async def test_audit_records_at_80_columns_show_target_and_result_and_filter_by_level(tmp_path):
    from console.audit.trail import AuditTrail

    log = tmp_path / "ollama.log"
    log.write_text("\n".join(LOG) + "\n")
    app = app_for(tmp_path, log)
    trail = AuditTrail.for_config(app.ctx.config, None)
    await trail.record("load", engine="ollama", target="llama3", params={}, result="ok", duration_s=1.0)
    await trail.record("unload", engine="ollama", target="qwen3", params={}, result="error: unreachable",
                       duration_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(pilot, until=lambda: len(panes_of(pilot)) == 2 and len(panes_of(pilot)[1].view.shown) == 2)
        await pilot.press("tab")
        await pilot.pause(0.1)
        rows = screen_text(app).splitlines()
        assert any("load ok  llama3  on ollama  1.00 s" in row for row in rows)
        assert any("unload error: unreachable  qwen3  on ollama" in row for row in rows)
        await pilot.press("v", "v")  # warn and above: the failed action stays (before, every record was hidden)
        view = panes_of(pilot)[1].view
        assert [line.text.split("  on ")[0] for line in view.shown] == ["unload error: unreachable  qwen3"]


LONG_NAME = "ollama-production-gpu-node-07-with-a-very-long-name"


async def _logs_at_80x24(pilot) -> None:
    await pilot.press("5")
    await settle(pilot, until=lambda: len(panes_of(pilot)) == 2 and len(panes_of(pilot)[0].view.shown) == 6)
    await settle(pilot)
    await pilot.pause(0.2)


def test_logs_screen_snapshot_80x24(snap_compare, tmp_path, monkeypatch):
    """One pane at a time: the log of an engine with a long name, its path elided in the middle in the border,
    the pane line naming both panes, long lines cut at the edge (Enter shows them whole)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(tmp_path)  # the log's path is relative, so the snapshot does not hold the tmp dir's name
    log = Path("logs") / LONG_NAME / "server-2026-11-22.log"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join([
        *LOG,
        'time=2026-11-22T06:50:05Z level=INFO source=server.go:1 msg="llama runner started in 3.52 seconds for '
        'model /var/lib/ollama/models/blobs/sha256-0123456789abcdef0123456789abcdef0123456789abcdef"',
        'time=2026-11-22T06:50:06Z level=WARN source=sched.go:9 msg="gpu VRAM usage didn\'t recover within '
        'timeout" seconds=5.02 model=qwen3:30b-a3b-instruct-2507-q4_K_M',
    ]) + "\n")
    try:
        assert snap_compare(app_for(tmp_path, log, name=LONG_NAME), terminal_size=(80, 24),
                            run_before=_logs_at_80x24)
    finally:
        monkeypatch.undo()
        time.tzset()
