"""SVG snapshots of the dashboard at 80x24 and 160x48, in the dark and light themes, of the chat screen, and of
every screen and the help at 80x24 with long engine and model names.

Deterministic by construction: stub engines with fixed figures, fixed GPU/host/process snapshots passed into
the app, poll intervals of an hour (one poll, no ticks), keep-alive "forever" (no clock), no cursor blink. The
chat is a finished session read back from the store, with fixed reply figures: nothing is timed.
Update with `pytest tests/ui/test_snapshots.py --snapshot-update` and look at the SVGs before committing.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

from console.config import SLO
from console.probe.figures import ITL_PER_TOKEN, LevelFigures
from console.probe.intervals import wilson
from console.probe.slo import verdict
from console.probe.stats import Dist
from console.ui.screens.chat import ChatScreen
from console.ui.widgets.prompt import PromptArea
from tests.ui.fixtures import LONG_GGUF, LONG_OLLAMA, demo_app, long_name_engines, settle

QUESTION = ("why does this crash?\nTraceback (most recent call last):\n"
            '  File "serve.py", line 3, in <module>\nKeyError: \'model\'')
REPLY = ('The config has no `model` key; read it with a default:\n\n'
         '```python\nmodel = cfg.get("model", "llama3.2:1b")\n```')


async def _settled(pilot) -> None:
    await settle(pilot)
    await settle(pilot)  # telemetry arrives from a thread: one more turn for its repaint


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard(snap_compare, tmp_path, theme, size):
    """Engines (Ollama and vLLM with run/wait and KV), three loaded models with their VRAM split, two H100s
    with a process mapped to vllm-a, and the host panel. At 80x24 the panels stack and the body scrolls."""
    assert snap_compare(demo_app(tmp_path, theme=theme), terminal_size=size, run_before=_settled)


async def _chat(pilot) -> None:
    """A saved session (a pasted stack trace, a reply with a code block) opened on the chat screen, and a
    two-line draft in the prompt."""
    app = pilot.app
    await settle(pilot)
    sessions = (await app.ctx.store()).sessions
    session = await sessions.create(title="why does this crash?", engine="ollama-a", model="llama3.2:1b")
    await sessions.add_message(session.id, "user", QUESTION)
    reply = await sessions.add_message(session.id, "assistant", REPLY, engine="ollama-a", model="llama3.2:1b")
    await sessions.update_message(reply, ttft_ms=212.0, tokens_in=48, tokens_out=24, tok_s=158.3,
                                  token_source="ollama eval_count")
    await pilot.press("3")
    await settle(pilot, until=lambda: isinstance(app.screen, ChatScreen))
    screen = app.screen
    await settle(pilot, until=lambda: screen.query_one("#sessions").option_count == 1)
    screen.open_session(session.id)
    await settle(pilot, until=lambda: screen.current is not None)
    prompt = screen.query_one("#prompt", PromptArea)
    prompt.cursor_blink = False
    await pilot.press(*"and when the file", "ctrl+j", *"is missing too?")
    await settle(pilot)


@pytest.mark.parametrize(("size", "theme"), [((80, 24), "dark"), ((80, 24), "light"), ((160, 48), "dark")],
                         ids=["80x24-dark", "80x24-light", "160x48-dark"])
def test_chat(snap_compare, tmp_path, size, theme):
    """A finished conversation: the user's multi-line message keeps its lines, the reply's code block is drawn,
    the figures row is under it; the prompt has grown to two lines and the keys (send, new line) are shown."""
    assert snap_compare(demo_app(tmp_path, theme=theme), terminal_size=size, run_before=_chat)


# -- 80 columns first: every screen at 80x24 with names as long as fleets make them ------------------------------
# The verdict columns (health; where a model sits; a model's state; a probe level's SLO, tok/s, req/s, achieved
# concurrency) are in view, and long names are elided in the middle.

def long_app(tmp_path):
    return demo_app(tmp_path, engines=long_name_engines())


def test_long_names_dashboard(snap_compare, tmp_path):
    assert snap_compare(long_app(tmp_path), terminal_size=(80, 24), run_before=_settled)


async def _models(pilot) -> None:
    await settle(pilot)
    await pilot.press("2")
    await settle(pilot, until=lambda: pilot.app.current_mode == "models"
                 and pilot.app.screen.query_one("#models").row_count == 3)
    await settle(pilot)


def test_long_names_models(snap_compare, tmp_path):
    assert snap_compare(long_app(tmp_path), terminal_size=(80, 24), run_before=_models)


async def _long_chat(pilot) -> None:
    """A saved session with a long engine and model name, opened from the list with the keys."""
    app = pilot.app
    await settle(pilot)
    sessions = (await app.ctx.store()).sessions
    session = await sessions.create(title="why does this crash?", engine=LONG_OLLAMA, model=LONG_GGUF)
    await sessions.add_message(session.id, "user", QUESTION)
    reply = await sessions.add_message(session.id, "assistant", REPLY, engine=LONG_OLLAMA, model=LONG_GGUF)
    await sessions.update_message(reply, ttft_ms=212.0, tokens_in=48, tokens_out=24, tok_s=158.3,
                                  token_source="ollama eval_count")
    await pilot.press("3")
    await settle(pilot, until=lambda: isinstance(app.screen, ChatScreen))
    screen = app.screen
    await settle(pilot, until=lambda: screen.query_one("#sessions").option_count == 1)
    await pilot.press("enter")
    await settle(pilot, until=lambda: screen.current is not None)
    screen.query_one("#prompt", PromptArea).cursor_blink = False
    await pilot.press("escape")  # out of the prompt: the key bar shows the chat's keys
    await settle(pilot)


def test_long_names_chat(snap_compare, tmp_path):
    assert snap_compare(long_app(tmp_path), terminal_size=(80, 24), run_before=_long_chat)


def _level(c: int, ttft_s: float, itl_s: float, tok_s: float, req_s: float, achieved: float) -> LevelFigures:
    n = 20
    return LevelFigures(
        concurrency=c, attempted=n, ok=n, errors={}, error_rate=0.0, window_s=12.0,
        ttft_s=Dist.of(ttft_s * (0.8 + 0.02 * i) for i in range(n)), ttfa_s=None, e2e_s=None,
        tpot_s=Dist.of([itl_s] * n), decode_tok_s=Dist.of([1 / itl_s] * n), itl_s=Dist.of([itl_s] * n),
        itl_kind=ITL_PER_TOKEN, max_stall_s=None, tokens_out_total=128 * n, tokens_out_mean=128.0,
        tokens_in_mean=32.0, token_source="ollama eval_count", tokens_approximate=False, agg_tok_s=tok_s,
        req_s=req_s, achieved_concurrency=achieved,
        ci={"ttft_s": {"p90": (ttft_s * 1.0, ttft_s * 1.18)}, "decode_tok_s": {"p10": (0.9 / itl_s, 1 / itl_s)}},
        slo_met=n, slo_attainment=1.0, slo_attainment_ci=wilson(n, n), goodput=req_s)


async def _probe(pilot) -> None:
    """A finished run with fixed figures, opened from the History tab with h and enter."""
    app = pilot.app
    await settle(pilot)
    levels = [_level(1, 0.12, 0.011, 88.0, 0.68, 1.0), _level(2, 0.15, 0.012, 160.5, 1.25, 2.0),
              _level(4, 0.31, 0.016, 236.2, 1.84, 3.9), _level(8, 1.42, 0.029, 262.7, 2.05, 7.8)]
    slo = SLO()
    probes = (await app.ctx.store()).probes
    run = await probes.start(engine=LONG_OLLAMA, engine_kind="ollama", engine_version="0.12.6", model=LONG_GGUF,
                             params={"levels": [1, 2, 4, 8], "requests": 20, "max_tokens": 128}, slo=asdict(slo))
    for f in levels:
        await probes.save_level(run, f.concurrency, f.to_dict())
    await probes.finish(run, "complete", verdict(levels, slo, engine_kind="ollama").to_dict())
    await pilot.press("4")
    await settle(pilot, until=lambda: app.current_mode == "probe")
    screen = app.screen
    await settle(pilot, until=lambda: screen.query_one("#model").value == LONG_GGUF)
    await pilot.press("h")
    await settle(pilot, until=lambda: screen.query_one("#history").row_count == 1)
    await pilot.press("enter")
    await settle(pilot, until=lambda: screen.query_one("#levels-table").row_count == 4)
    await settle(pilot)


def test_long_names_probe(snap_compare, tmp_path):
    assert snap_compare(long_app(tmp_path), terminal_size=(80, 24), run_before=_probe)


async def _help(pilot) -> None:
    await settle(pilot)
    await pilot.press("question_mark")
    await settle(pilot, until=lambda: type(pilot.app.screen).__name__ == "HelpScreen")


def test_help(snap_compare, tmp_path):
    assert snap_compare(long_app(tmp_path), terminal_size=(80, 24), run_before=_help)
