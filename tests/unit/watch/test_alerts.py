"""Alerts over snapshots: pending until `for` has passed, firing with the value, resolved when it ends, unknown
when there is nothing to judge; and a rule's command: argv without a shell, bounded in time and output."""

from __future__ import annotations

import sys

from console.engines.base import EngineInfo, Health
from console.engines.poll import EngineStatus
from console.telemetry.gpu import GpuSample, GpuSnapshot
from console.watch.alerts import Alerts, judge_once
from console.watch.collect import Pressure, Snapshot, Traffic
from console.watch.command import OUTPUT_MAX, run_command
from console.watch.rules import Rule, Rules


def gpu(temp: float, used: int = 50, total: int = 100) -> GpuSnapshot:
    return GpuSnapshot(available=True, gpus=(GpuSample(0, "H100", "GPU-1", 10.0, 1.0, used, total, temp, 100.0,
                                                       700.0),))


def engine(name: str, health: Health = Health.OK, error: str | None = None) -> EngineStatus:
    info = None if error else EngineInfo("vllm", "http://x", "1", health)
    return EngineStatus(name=name, url="http://x", kind="vllm", info=info, error=error)


def test_a_breach_is_pending_until_for_then_fires_with_its_value_then_resolves():
    alerts = Alerts(Rules(rules=(Rule("hot", "gpu_temperature", above=80, for_s=60),)))
    assert alerts.judge(Snapshot(0, gpus=gpu(85)), now=1000) == []  # pending
    assert alerts.judge(Snapshot(0, gpus=gpu(86)), now=1030) == []
    (fired,) = alerts.judge(Snapshot(0, gpus=gpu(87)), now=1061)
    assert (fired.event, fired.subject, fired.value, fired.threshold, fired.since) == ("firing", "gpu:0", 87, 80, 1000)
    assert alerts.judge(Snapshot(0, gpus=gpu(90)), now=1070) == []  # fires once
    (resolved,) = alerts.judge(Snapshot(0, gpus=gpu(70)), now=1080)
    assert (resolved.event, resolved.value, resolved.since) == ("resolved", 70, 1000)
    assert alerts.firing() == []


def test_a_break_in_the_breach_starts_the_wait_again():
    alerts = Alerts(Rules(rules=(Rule("busy", "waiting", above=4, for_s=10),)))
    snap = lambda w: Snapshot(0, engines=(engine("a"),), pressure={"a": Pressure(waiting=w)})  # noqa: E731
    alerts.judge(snap(9), now=0)
    alerts.judge(snap(1), now=5)
    assert alerts.judge(snap(9), now=11) == []  # the breach restarted at 11
    (fired,) = alerts.judge(snap(9), now=21)
    assert fired.event == "firing" and fired.value == 9 and fired.subject == "engine:a"


def test_engine_down_fires_with_the_reason_and_resolves_when_the_engine_is_gone_from_the_list():
    alerts = Alerts(Rules(rules=(Rule("down", "engine_down"),)))
    (fired,) = alerts.judge(Snapshot(0, engines=(engine("a", error="cannot connect to http://x"), engine("b"))))
    assert (fired.subject, fired.value, fired.detail) == ("engine:a", 1.0, "cannot connect to http://x")
    (resolved,) = alerts.judge(Snapshot(0, engines=(engine("b"),)))
    assert resolved.event == "resolved" and resolved.detail == "no longer reported"


def test_nothing_to_judge_is_unknown_once_per_spell_and_names_why():
    alerts = Alerts(Rules(rules=(Rule("vram", "vram_percent", above=90),)))
    no_gpu = Snapshot(0, gpus=GpuSnapshot(available=False, reason="NVML not available"))
    (unknown,) = alerts.judge(no_gpu)
    assert unknown.event == "unknown" and "NVML not available" in unknown.detail
    assert alerts.judge(no_gpu) == []
    assert alerts.judge(Snapshot(0, late=("gpu",)), now=1) == []  # still the same spell of unknowns
    (fired,) = alerts.judge(Snapshot(0, gpus=gpu(50, used=95)))
    assert fired.event == "firing" and fired.value == 95.0


def test_judge_once_fires_every_breach_now_without_waiting_for():
    rules = Rules(rules=(Rule("slow", "ttft_p90", above=1.0, for_s=600), Rule("hot", "gpu_temperature", above=80)))
    events = judge_once(rules, Snapshot(0, gpus=gpu(60), traffic=(Traffic("a", "m", 10, ttft_p90_s=2.5),
                                                                  Traffic("a", "n", 10, ttft_p90_s=0.2))))
    assert [(e.event, e.rule, e.subject, e.value) for e in events] == [("firing", "slow", "engine:a model:m", 2.5)]


def test_findings_count_per_engine_and_kind():
    class F:
        def __init__(self, kind, engine):
            self.kind, self.engine, self.since = kind, engine, None

    rules = Rules(rules=(Rule("cpu", "finding", kind="partly_on_cpu"),))
    snap = Snapshot(0, engines=(engine("a"), engine("b")),
                    findings=(F("partly_on_cpu", "a"), F("throttling", "b"), F("partly_on_cpu", "a")))
    events = judge_once(rules, snap)
    assert [(e.subject, e.value) for e in events] == [("engine:a", 2)]


async def test_a_command_is_argv_never_a_shell_and_gets_the_event():
    script = "import os, sys; print(sys.argv[1]); print(os.environ['ENGINEDECK_ALERT_RULE'])"
    result = await run_command((sys.executable, "-c", script, "$(touch /tmp/x); echo hi"),
                               {"ENGINEDECK_ALERT_RULE": "hot"}, 10)
    assert result.exit_code == 0 and not result.timed_out
    assert result.output.splitlines() == ["$(touch /tmp/x); echo hi", "hot"]


async def test_a_command_past_its_timeout_is_killed_and_its_output_bounded():
    result = await run_command((sys.executable, "-c", "import time,sys; sys.stdout.write('x' * 100000); "
                                "sys.stdout.flush(); time.sleep(60)"), {}, 1.0)
    assert result.timed_out and result.exit_code is None and result.seconds < 10
    assert len(result.output) == OUTPUT_MAX and result.truncated


async def test_a_command_that_cannot_start_says_why_and_escapes_nothing():
    result = await run_command(("/nonexistent/program",), {}, 5)
    assert result.exit_code is None and "cannot run /nonexistent/program" in result.error
    evil = await run_command((sys.executable, "-c", "print('\\x1b]0;pwned\\x07ok')"), {}, 5)
    assert "\x1b" not in evil.output and "ok" in evil.output
