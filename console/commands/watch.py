"""`enginedeck watch --rules FILE [--once]`: alert rules over this box's engines, GPUs, pressure, gateway TTFT
and findings, headless; NDJSON events on stdout (docs/exporter.md, "Alerts").

Each look collects what the exporter serves (console/watch/collect.py) and judges every rule
(console/watch/alerts.py). An event is one JSON object per line: `firing`, `resolved` or `unknown`, with the
rule, the subject, the value and the threshold; a rule's command, when it runs, adds a `command` line with its
exit code and (inert, bounded) output.

Exit codes (documented for cron and monitoring checks):
  0  nothing firing (--once), or stopped by SIGINT / SIGTERM
  1  at least one rule firing (--once)
  2  usage or rules-file error (nothing was judged)
  3  nothing firing, but at least one rule could not be judged (--once: no GPU reading, a late part, ...)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.argtypes import seconds

if TYPE_CHECKING:
    from console.services import Context
    from console.watch.alerts import Event
    from console.watch.rules import Rule, Rules

EXIT_OK, EXIT_FIRING, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3
MAX_COMMANDS_AT_ONCE = 8  # rule commands running together; more wait their turn


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("watch", parents=[common], help="alert rules over engines, GPUs and pressure (NDJSON events)",
                       description="Judge the alert rules of FILE over this box: NDJSON events (firing, resolved, "
                                   "unknown) on stdout. --once judges once for cron: exit 0 ok, 1 firing, 2 usage "
                                   "or rules-file error, 3 unknown.")
    p.add_argument("--rules", required=True, type=Path, metavar="FILE", help="the rules file (TOML)")
    p.add_argument("--once", action="store_true", help="judge once and exit with the state (for cron)")
    p.add_argument("--interval", type=seconds, default=None, metavar="SECONDS",
                   help="between two looks (default: the file's interval, else 10 s)")
    p.add_argument("--deadline", type=seconds, default=None, metavar="SECONDS",
                   help="the most one look's collection may take (default 4 s)")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    from console.commands.exporter import build_collector
    from console.errors import ConfigError
    from console.logs.sanitize import one_line
    from console.watch.alerts import Alerts, judge_once
    from console.watch.rules import load_rules

    try:
        rules = load_rules(args.rules)
    except ConfigError as exc:
        print(f"enginedeck: {one_line(str(exc), 600)}", file=sys.stderr)
        return EXIT_USAGE
    collector = build_collector(ctx, args.deadline)
    commands = Commands()
    try:
        if args.once:
            events = judge_once(rules, await collector.collect())
            for event in events:
                emit(event.as_json())
                await commands.start(rules, event)
            await commands.finish()
            if any(e.event == "firing" for e in events):
                return EXIT_FIRING
            return EXIT_UNKNOWN if any(e.event == "unknown" for e in events) else EXIT_OK
        alerts = Alerts(rules)
        interval = args.interval or rules.interval_s
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            while not stop.is_set():
                for event in alerts.judge(await collector.collect()):
                    emit(event.as_json())
                    await commands.start(rules, event)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        await commands.finish()
        return EXIT_OK
    finally:
        collector.close()
        if collector.gpu is not None:
            collector.gpu.close()


def emit(obj: dict[str, Any]) -> None:
    from console.commands.output import json_text

    sys.stdout.write(json_text(obj, indent=None) + "\n")
    sys.stdout.flush()


class Commands:
    """The rules' commands, each in its own task (a slow one never delays the next look), a few at a time."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_COMMANDS_AT_ONCE)

    async def start(self, rules: Rules, event: Event) -> None:
        if event.event not in ("firing", "resolved"):
            return
        rule = next((r for r in rules.rules if r.name == event.rule), None)
        if rule is None or not rule.command:
            return
        task = asyncio.create_task(self._run(rule, event), name=f"alert command {rule.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rule: Rule, event: Event) -> None:
        from console.commands.output import json_text
        from console.watch.command import run_command

        env = {"ENGINEDECK_ALERT_EVENT": event.event, "ENGINEDECK_ALERT_RULE": event.rule,
               "ENGINEDECK_ALERT_METRIC": event.metric, "ENGINEDECK_ALERT_SUBJECT": event.subject,
               "ENGINEDECK_ALERT_VALUE": "" if event.value is None else f"{event.value:g}",
               "ENGINEDECK_ALERT_THRESHOLD": "" if event.threshold is None else f"{event.threshold:g}",
               "ENGINEDECK_ALERT_JSON": json_text(event.as_json(), indent=None)}
        async with self._slots:
            result = await run_command(rule.command, env, rule.command_timeout_s)
        emit({"event": "command", "rule": rule.name, "for": event.event, "subject": event.subject,
              "program": result.argv0, "exit_code": result.exit_code, "timed_out": result.timed_out,
              "seconds": round(result.seconds, 3), "output": result.output, "output_truncated": result.truncated,
              "error": result.error or None})

    async def finish(self) -> None:
        """Wait for the commands still running (each is bounded by its own timeout)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
