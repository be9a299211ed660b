"""`enginedeck ps --json` carries each engine's pressure, under the names the dashboard and the exporter use."""

from __future__ import annotations

import json

import pytest

from console.engines.pressure import FIGURES
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_family import FakeSGLang


def test_ps_json_has_pressure_per_engine(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama,
                                         sglang_server: FakeSGLang):
    assert cli("ps", "--json", engines={"o": ollama_server.url, "sg": sglang_server.url}) == 0
    out = json.loads(capsys.readouterr().out)
    by_engine = {p["engine"]: p for p in out["pressure"]}
    assert set(by_engine) == {"o", "sg"}
    for p in by_engine.values():
        assert set(FIGURES) <= set(p)
        for name in FIGURES:
            figure = p[name]
            assert (figure["value"] is None) == bool(figure["missing"]), (p["engine"], name)
    assert by_engine["sg"]["running"]["source"] == "sglang:num_running_reqs"
    assert by_engine["sg"]["running"]["value"] is not None
    assert "gateway" in by_engine["o"]["running"]["missing"]
