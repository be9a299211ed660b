"""--read-only in the chat screen: a model that is not loaded is refused with the reason (asking it would load
it), as `enginedeck chat --read-only` refuses it; a loaded model chats."""

from __future__ import annotations

from console.config import EngineConfig
from console.ui.app import EngineDeckApp
from tests.fakes.ollama_server import ollama_contract_server
from tests.ui.fixtures import TestContext, make_config, settle
from tests.ui.test_chat_screen import SKY, done, new_chat, open_chat, replies, send


async def test_read_only_chat_refuses_a_model_that_is_not_loaded(tmp_path):
    with ollama_contract_server() as fake:
        config = make_config(tmp_path, engines=[EngineConfig(name="fake", url=fake.url, kind="ollama")],
                             read_only=True)
        app = EngineDeckApp(TestContext(config))
        async with app.run_test(size=(120, 40)) as pilot:
            await open_chat(pilot)
            pane = await new_chat(pilot, "llama3.2:1b")
            await send(pilot, "hi")
            await settle(pilot, until=lambda: done(pane))
            reply = replies(pane)[-1]
            shown = str(reply.query_one(".figures").render())  # the status line under the reply says why
            assert reply.status == "error" and "not loaded" in shown and "--read-only" in shown
            assert not fake.loaded_names()

            fake.load(fake.resolve("llama3.2:1b"), None, None)
            await send(pilot, "hi again")
            await settle(pilot, until=lambda: done(pane) and replies(pane)[-1].status == "complete")
            assert replies(pane)[-1].content == SKY
            assert fake.loaded_names() == ["llama3.2:1b"]
