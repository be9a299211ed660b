"""Will it fit against the lab's real llama-server (CPU): the dry-run's prediction against the server's own RSS,
and a real router load leaving its fit record, measured on the child that serves the model."""

from __future__ import annotations

import json

import psutil
import pytest

from tests.integration.test_chat_model_check_real import enginedeck
from tests.lab_fixtures import LabRouter, LabServer
from tests.stores import fit_records

pytestmark = pytest.mark.llama


def test_dry_run_predicts_the_servers_rss(llama_server: LabServer, tmp_path):
    done = enginedeck(tmp_path, "load", llama_server.url, llama_server.model, "--dry-run", "--json", "--on", "cpu")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    p = doc["predicted"]
    assert (doc["verdict"], p["memory"], p["slots"], p["kv_cells"]) == ("fits", "host", 4, 4096)
    rss = psutil.Process(llama_server.pid).memory_info().rss
    assert abs(p["total_bytes"] - rss) / rss < 0.10, (p, rss)  # the ±10 % target of docs/fit.md


def test_router_load_records_predicted_and_measured(router: LabRouter, tmp_path):
    model = router.models[0]
    done = enginedeck(tmp_path, "load", router.url, model, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["warnings"] == []

    (row,) = fit_records(tmp_path / "data")
    assert (row.engine_kind, row.model, row.memory, row.context * row.slots) == ("llamacpp", model, "host", 2048)
    child = int(row.measured_source.removeprefix("rss:pid "))
    assert child != router.pid and psutil.Process(child).ppid() == router.pid  # the child, not the router
    assert abs(row.predicted - row.measured) / row.measured < 0.10, row
