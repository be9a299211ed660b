"""SVG snapshots of the dashboard at 80x24 and 160x48, in the dark and light themes, and of the chat screen.

Deterministic by construction: stub engines with fixed figures, fixed GPU/host/process snapshots passed into
the app, poll intervals of an hour (one poll, no ticks), keep-alive "forever" (no clock), no cursor blink. The
chat is a finished session read back from the store, with fixed reply figures: nothing is timed.
Update with `pytest tests/ui/test_snapshots.py --snapshot-update` and look at the SVGs before committing.
"""

from __future__ import annotations

import pytest

from console.ui.screens.chat import ChatScreen
from console.ui.widgets.prompt import PromptArea
from tests.ui.fixtures import demo_app, settle

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
