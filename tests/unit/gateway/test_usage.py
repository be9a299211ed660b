"""The usage ledger from a real gateway: its rows add up to the signed log's records, per client and model;
`enginedeck usage` reads them as a table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import ollama

from tests.unit.gateway.conftest import ROOT


def _usage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", "--no-discover", "--config", str(tmp_path / "config.toml"),
                           "usage", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data")})


def test_usage_adds_up_to_the_records(tmp_path: Path, gateway, ollama_server) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice alice-key-0123456789abcdef\nbob bob-key-0123456789abcdef\n")
    keys.chmod(0o600)
    gw = gateway(ollama_server.url, "--keys-file", str(keys))
    for who, n in (("alice", 3), ("bob", 1)):
        client = ollama.Client(host=gw.url, headers={"Authorization": f"Bearer {who}-key-0123456789abcdef"})
        for _ in range(n):
            client.chat(model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}])
    httpx.get(f"{gw.url}/api/tags")  # no key: rejected, an error for `anonymous`
    records = gw.wait_records(5)
    assert gw.stop() == 0
    res = _usage(tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["client"]: r for r in json.loads(res.stdout)["rows"]}
    for who in ("alice", "bob", "anonymous"):
        mine = [r for r in records if r["client"] == who]
        assert rows[who]["requests"] == len(mine)
        assert rows[who]["errors"] == sum(r["outcome"] != "ok" for r in mine)
        assert rows[who]["tokens_in"] == sum(r["tokens_in"] or 0 for r in mine)
        assert rows[who]["tokens_out"] == sum(r["tokens_out"] or 0 for r in mine) > 0 or who == "anonymous"
        assert abs(rows[who]["busy_s"] - sum(r["latency_ms"] for r in mine) / 1000) < 0.01
    by_model = _usage(tmp_path, "--by", "model", "--csv")
    table = list(csv.reader(io.StringIO(by_model.stdout)))
    assert table[0] == ["model", "requests", "errors", "tokens_in", "tokens_out", "busy_s"]
    assert {row[0]: int(row[1]) for row in table[1:]} == {"llama3.2:1b": 4, "(none)": 1}
    text = _usage(tmp_path, "--since", "1h")
    assert text.returncode == 0 and "alice" in text.stdout
    assert json.loads(_usage(tmp_path, "--since", "2999-01-01", "--json").stdout)["rows"] == []
    bad = _usage(tmp_path, "--since", "yesterday")
    assert bad.returncode == 2 and "24h or 7d" in bad.stderr
