"""`enginedeck probe ENGINE MODEL --workload FILE`: replay a gateway capture's requests by their shape (prompt
lengths, max tokens), closed loop or at their recorded arrival times (console/probe/replay.py; docs/gateway.md).

Kept apart from commands/probe.py, which only registers these options and hands a `--workload` run here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.commands.output import Col, print_json, print_table

if TYPE_CHECKING:
    from console.services import Context


def _speed(text: str) -> float:
    from console.argtypes import seconds  # a finite number above zero

    return seconds(text)


def add_workload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", type=Path, metavar="FILE",
                   help="replay a gateway capture's requests (prompt lengths, max tokens) instead of the ladder")
    p.add_argument("--replay-arrivals", action="store_true",
                   help="with --workload: open loop, each request at its recorded arrival time")
    p.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                   help="with --replay-arrivals: X times faster than recorded (default 1)")


def _ms(d: dict[str, Any] | None, key: str) -> str:
    value = d.get(key) if d else None
    return "—" if value is None else f"{value * 1000:.0f}"


async def run_workload(args: argparse.Namespace, ctx: Context, engine_ref: str, model: str) -> int:
    from console.config import EngineConfig
    from console.engines.registry import build_engine
    from console.errors import EngineDeckError, ReadOnlyError
    from console.logs.sanitize import one_line
    from console.probe.params import parse_levels
    from console.probe.replay import load_workload, replay

    if ctx.config.read_only:
        raise ReadOnlyError("probe refused: enginedeck runs with --read-only (a replay loads the engine)")
    items = load_workload(args.workload)
    concurrency = max(parse_levels(args.levels)) if args.levels else 1
    resolved = await ctx.engine(engine_ref)
    cfg = ctx.config.engine(resolved.name) or EngineConfig(
        name=resolved.name, url=resolved.base_url, kind=resolved.kind, timeouts=ctx.config.timeouts,
        limits=ctx.config.limits)
    engine = build_engine(cfg, resolved.kind, max_connections=max(concurrency, 64))
    t0 = time.perf_counter()
    status = "error"
    try:
        result = await replay(engine, model, items, concurrency=concurrency, arrivals=args.replay_arrivals,
                              speed=args.speed, timeout_s=args.request_timeout)
        status = "complete"
    finally:
        await engine.aclose()
        try:
            audit = await ctx.audit()
            await audit.record("probe workload", engine=engine.name, target=model,
                               params={"workload": str(args.workload), "requests": len(items),
                                       "concurrency": concurrency, "arrivals": args.replay_arrivals,
                                       "speed": args.speed}, result=status, duration_s=time.perf_counter() - t0)
        except EngineDeckError as exc:
            print(f"enginedeck: warning: the audit trail was not written: {one_line(str(exc))}", file=sys.stderr)
    summary = result.summary()
    mode = f"recorded arrivals x{args.speed:g}" if args.replay_arrivals else f"closed loop, {concurrency} stream(s)"
    if args.json:
        print_json({"engine": engine.name, "model": model, "workload": str(args.workload), "mode": mode, **summary,
                    "items": [{"offset_s": it.offset_s, "prompt_tokens": it.prompt_tokens,
                               "max_tokens": it.max_tokens, "ttft_s": r.ttft_s, "e2e_s": r.e2e_s,
                               "tokens_out": r.tokens_out, "error": r.error.value if r.error else None}
                              for it, r in zip(result.items, result.records, strict=True)]})
    else:
        print(f"{engine.name} {model}: {summary['requests']} requests from {args.workload} ({mode}) in "
              f"{summary['wall_s']:.1f} s, {summary['errors']} errors")
        print_table([Col("figure", keep=9), Col("p50 ms", keep=8, right=True), Col("p90 ms", keep=7, right=True),
                     Col("p99 ms", keep=6, right=True), Col("max ms", keep=5, right=True)],
                    [(name, _ms(d, "p50"), _ms(d, "p90"), _ms(d, "p99"), _ms(d, "max"))
                     for name, d in (("TTFT", summary["ttft_s"]), ("end to end", summary["e2e_s"]),
                                     ("send lag", summary["send_lag_s"])) if d is not None])
        print(f"tokens in {summary['tokens_in']}, out {summary['tokens_out']}; "
              f"{summary['requests_per_s'] or 0:.2f} requests/s")
    return 0 if summary["errors"] == 0 else 1
