"""The dashboard's run/wait of an Ollama engine (which counts neither) comes from a configured gateway's live
socket in front of it, marked "gw"; without the gateway it stays "—"."""

from __future__ import annotations

import time

from console.config import EngineConfig, GatewayConfig
from console.gateway.live import SOCKET, Live
from console.gateway.record import RequestRecord
from tests.ui.fixtures import (
    NO_GPU,
    demo_app,
    settle,
)
from tests.ui.test_dashboard import rows


def _record(request_id: str) -> RequestRecord:
    return RequestRecord(request_id=request_id, started=time.time(), method="POST", path="/api/chat",
                         client_ip="127.0.0.1", client="anonymous", user_agent="test", upstream="ollama-a",
                         model="llama3.2:1b")


async def test_ollama_run_wait_comes_from_the_gateway_in_front(tmp_path) -> None:
    log_dir = tmp_path / "gw"
    log_dir.mkdir()
    engine = EngineConfig(name="ollama-a", url="http://127.0.0.1:11434")  # the stub's name and URL
    gateways = (GatewayConfig(name="front", listen="127.0.0.1:0", upstream="ollama-a", log_dir=log_dir),)
    live = Live("front", engine.url)
    server = await live.serve(log_dir / SOCKET)
    streaming, queued = _record("r1"), _record("r2")
    live.start(streaming)
    live.chunk(streaming, 10)
    live.start(queued)
    app = demo_app(tmp_path, gpu=NO_GPU, processes=(), configured=[engine], gateways=gateways)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, until=lambda: any(r[0] == "ollama-a" for r in rows(app, "engines")))
            (ollama,) = [r for r in rows(app, "engines") if r[0] == "ollama-a"]
            assert ollama[5] == "1/1 gw"
    finally:
        server.close()
        await server.wait_closed()
