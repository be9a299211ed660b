"""The logs screen: panes per configured engine log plus the audit trail, following, level and regex filters,
search next/previous, pause/follow, layout, raw lines, a command pane, hostile lines and signature marks."""

from __future__ import annotations

import sys

from textual.widgets import Input

from console.config import EngineConfig
from console.logs.line import Mark
from console.ui.app import EngineDeckApp
from console.ui.widgets.log_pane import LogPane, LogView
from tests.ui.fixtures import TestContext, make_config, settle

LOG = [
    'time=2026-11-22T06:50:01Z level=INFO source=routes.go:1 msg="Listening on 127.0.0.1:11434"',
    'time=2026-11-22T06:50:02Z level=WARN source=gpu.go:2 msg="no compatible GPUs"',
    'time=2026-11-22T06:50:03Z level=ERROR source=sched.go:3 msg="error loading model"',
    'time=2026-11-22T06:50:04Z level=INFO source=routes.go:4 msg="request served"',
]


def app_for(tmp_path, log_path):
    engines = [EngineConfig(name="ollama", url="http://127.0.0.1:9", kind="ollama", log_file=log_path)]
    return EngineDeckApp(TestContext(make_config(tmp_path, engines=engines)))


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
        await pilot.press("l")  # stacked: each pane gets the full width
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
