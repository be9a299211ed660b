"""`enginedeck probe ENGINE MODEL`: the concurrency ladder, headless; and `probe history|show|compare`.

Every run is saved as it goes (the run row first, each level when it completes), so Ctrl-C keeps the levels
already measured (status "cancelled"). Exit 0 when the run completed, whatever the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from console.argtypes import seconds
from console.commands.probe_workload import add_workload_options, run_workload
from console.config import EngineConfig
from console.errors import ConfigError, EngineDeckError, ProbeError, ReadOnlyError
from console.logs.sanitize import neutralise, one_line
from console.present.probe import (
    LEVEL_HEADERS,
    PHASE_LEGEND,
    change,
    level_row,
    millis,
    number,
    or_dash,
    rate,
    steps,
    usable,
    verdict_lines,
)
from console.probe.params import ARRIVALS, PRECISION, VERDICTS

if TYPE_CHECKING:
    from console.probe.figures import LevelFigures
    from console.probe.ladder import LevelProgress
    from console.probe.report import RunView
    from console.services import Context
    from console.telemetry.energy import EnergyMeter

SUBCOMMANDS = ("history", "show", "compare")
USAGE = ("enginedeck probe ENGINE MODEL [options] | probe history | probe show RUN_ID | "
         "probe compare RUN_A RUN_B")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "probe", parents=[common], usage=USAGE,
        help="concurrency probe: TTFT / ITL / tok/s per level and the max usable concurrency",
        description="Run a closed-loop concurrency ladder against ENGINE serving MODEL (every run is saved), or "
                    "list, show and compare saved runs. Metric definitions: docs/probe.md.",
    )
    p.add_argument("target", nargs="+", metavar="ARG", help="ENGINE MODEL, or history, show RUN_ID, compare A B")
    p.add_argument("--levels", default=None, help="concurrency levels, e.g. 1,2,4,8 (default 1,2,4,8,16,32)")
    p.add_argument("--requests", default=20, metavar="N",
                   help="measured requests per level (at least 2 per stream; default 20)")
    p.add_argument("--max-tokens", default=128, metavar="N", help="output tokens asked per request")
    p.add_argument("--prompt-tokens", default=64, metavar="N",
                   help="approximate prompt length (no tokenizer is used; the server's count is shown)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="ask for exactly --max-tokens (vLLM, llama.cpp, SGLang; others may refuse it)")
    p.add_argument("--request-timeout", type=seconds, default=120.0, metavar="SECONDS",
                   help="a whole reply; a longer one counts as a timeout error (default 120)")
    p.add_argument("--workers", default=0, metavar="N",
                   help="processes that run a level's streams (default 0: more than one only for levels over 32 "
                        "streams on a box with the cores; 1: always in this process)")
    p.add_argument("--slo", default=None, metavar="SPEC",
                   help="e.g. ttft_p90=1s,decode_p10=10,errors=1%% (defaults from the config)")
    p.add_argument("--verdict", choices=VERDICTS, default=VERDICTS[0],
                   help="judge TTFT p90 and decode p10 at their 95%% intervals' pessimistic end (default) or at "
                        "the figures")
    p.add_argument("--precision", default=PRECISION, metavar="N",
                   help="after the ladder, bisect between the last passing and first failing level until they "
                        "are N apart (default 1: exact; 0: no bisection)")
    p.add_argument("--noise-guard", action="store_true",
                   help="run concurrency 1 twice and report the spread (a warning above 10%%)")
    p.add_argument("--rate", default=None, metavar="R",
                   help="open loop: requests arrive at R per second whatever the engine does (instead of --levels)")
    p.add_argument("--rates", default=None, metavar="R1,R2,…", help="open loop: a ladder of arrival rates")
    p.add_argument("--arrivals", choices=ARRIVALS, default=ARRIVALS[0],
                   help="open loop: Poisson arrivals (default) or evenly spaced")
    p.add_argument("--max-in-flight", default=256, metavar="N",
                   help="open loop: a request due while N are in flight is dropped (counted as failed), not "
                        "delayed (default 256)")
    p.add_argument("--energy", action="store_true",
                   help="measure the GPUs' energy: idle for 2 s before the run, then joules per output token for "
                        "each closed-loop level (NVML; docs/truth.md)")
    p.add_argument("--limit", type=int, default=20, help="probe history: how many runs (default 20)")
    add_workload_options(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="one CSV row per level")
    fmt.add_argument("--markdown", action="store_true", help="a Markdown table and the verdict")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    target = list(args.target)
    if target[0] == "history":
        _arity(target, 1)
        return await _history(args, ctx)
    if target[0] == "show":
        _arity(target, 2)
        return await _show(args, ctx, _run_id(target[1]))
    if target[0] == "compare":
        _arity(target, 3)
        return await _compare(args, ctx, _run_id(target[1]), _run_id(target[2]))
    _arity(target, 2, what="ENGINE MODEL")
    if args.workload is not None:
        return await run_workload(args, ctx, target[0], target[1])
    return await _probe(args, ctx, target[0], target[1])


def _arity(target: Sequence[str], n: int, *, what: str | None = None) -> None:
    if len(target) != n:
        shown = what or " ".join([*target[:1], *["…"] * (n - 1)])
        raise ConfigError(f"probe: expected {shown} ({n} argument{'s' if n > 1 else ''}), got {len(target)}",
                          hint=USAGE)


def _run_id(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"probe: run ids are numbers (see `enginedeck probe history`), not {text!r}")
    return int(text)


# -- running a probe ----------------------------------------------------------------------------------------

class _Progress:
    """One status line on stderr, rewritten in place, only when stderr is a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def __call__(self, p: LevelProgress) -> None:
        if not self.live:
            return
        from console.commands.output import rewrite_line

        if p.phase == "done":
            rewrite_line(self.out, f"{p.label}: {p.done} requests, {p.errors} errors\n")
        else:
            rewrite_line(self.out, f"{p.label} {p.phase} {p.done}/{p.total}  errors {p.errors}")
        self.out.flush()


async def _probe(args: argparse.Namespace, ctx: Context, engine_ref: str, model: str) -> int:
    from console.engines.registry import build_engine
    from console.probe.environment import engine_version, environment
    from console.probe.ladder import Probe
    from console.probe.params import probe_params
    from console.probe.report import RunView
    from console.probe.slo import parse_slo
    from console.probe.workers import EngineSource

    if ctx.config.read_only:
        raise ReadOnlyError("probe refused: enginedeck runs with --read-only (a probe loads the engine)")
    params = probe_params(
        levels=args.levels, rate=args.rate, rates=args.rates,
        requests=args.requests, max_tokens=args.max_tokens, prompt_tokens=args.prompt_tokens,
        timeout_s=args.request_timeout, ignore_eos=args.ignore_eos, workers=args.workers,
        verdict=args.verdict, precision=args.precision, noise_guard=args.noise_guard,
        arrivals=args.arrivals, max_in_flight=args.max_in_flight,
    )
    slo = parse_slo(args.slo, ctx.config.slo)
    meter = await _meter(args)
    resolved = await ctx.engine(engine_ref)
    # A client of its own, with a pool as large as the highest level (httpx defaults cap at 100).
    cfg = ctx.config.engine(resolved.name) or EngineConfig(
        name=resolved.name, url=resolved.base_url, kind=resolved.kind, timeouts=ctx.config.timeouts,
            limits=ctx.config.limits)
    engine = build_engine(cfg, resolved.kind, max_connections=params.connections)
    store = await ctx.store()
    audit = await ctx.audit()
    t0 = time.perf_counter()
    status = "error"
    try:
        try:
            version, down = await engine_version(engine), None
        except ProbeError as exc:  # down or silent: the run is kept, as an error, with nothing measured
            version, down = None, exc
        env = await environment(engine, version)
        run_id = await store.probes.start(
            engine=engine.name, engine_kind=engine.kind, engine_version=version, model=model,
            params=params.to_dict(), slo=asdict(slo), environment=env)
        if down is not None:
            await store.probes.finish(run_id, "error", None)
            raise down

        async def save_level(figures: LevelFigures) -> None:
            await store.probes.save_level(run_id, figures.concurrency, figures.to_dict())

        probe = Probe(engine, model, params, slo, source=EngineSource(cfg, resolved.kind),
                      on_progress=_Progress(sys.stderr), on_level=save_level, energy=meter)
        try:
            result = await probe.run()
        except asyncio.CancelledError:
            result = probe.result
            await store.probes.finish(run_id, "cancelled", result.verdict.to_dict() if result.verdict else None)
            status = "cancelled"
            if result.levels:  # the levels measured before Ctrl-C are kept and shown
                _print_view(args, RunView.from_result(result, run_id=run_id, engine_version=version,
                                                      environment=env))
            raise
        except BaseException:
            result = probe.result
            await store.probes.finish(run_id, "error", result.verdict.to_dict() if result.verdict else None)
            raise
        status = result.status
        await store.probes.finish(run_id, status, result.verdict.to_dict() if result.verdict else None)
    finally:
        await engine.aclose()
        try:
            await audit.record("probe start", engine=engine.name, target=model,
                               params={**params.to_dict(), "slo": asdict(slo)}, result=status,
                               duration_s=time.perf_counter() - t0)
        except EngineDeckError as exc:  # bookkeeping: the measured run stands even if the trail cannot be written
            print(f"enginedeck: warning: the audit trail was not written: {one_line(str(exc))}", file=sys.stderr)
    if result.error is not None:  # the engine refused the work: its own words, not a table of failures
        raise ProbeError(result.error)
    view = RunView.from_result(result, run_id=run_id, engine_version=version, environment=env)
    _print_view(args, view)
    return 0 if status == "complete" else 1


# -- stored runs ------------------------------------------------------------------------------------------

async def _history(args: argparse.Namespace, ctx: Context) -> int:
    from console.commands.output import Col, print_json, print_table

    runs = await (await ctx.store()).probes.recent(limit=args.limit)
    if args.json:
        print_json([{
            "run_id": r.id, "started_at": _iso(r.started_at), "status": r.status, "engine": r.engine,
            "engine_kind": r.engine_kind, "model": r.model,
            "max_usable_concurrency": (r.verdict or {}).get("max_usable_concurrency"),
            "max_rate": (r.verdict or {}).get("max_rate"),
            "knee": (r.verdict or {}).get("knee"), "levels": (r.params or {}).get("levels"),
            "rates": (r.params or {}).get("rates") or None,
        } for r in runs])
        return 0
    if not runs:
        print("no probe runs yet: run `enginedeck probe ENGINE MODEL`")
        return 0
    print_table(
        [Col("ID", keep=9, right=True), Col("STARTED", keep=5), Col("ENGINE", "middle", keep=7),
         Col("MODEL", "middle", keep=8, min=14), Col("STATUS", keep=6), Col("LEVELS", "end", keep=3, min=8),
         Col("MAX USABLE", keep=9, right=True), Col("KNEE", keep=6, right=True)],
        [[r.id, _iso(r.started_at, short=True), r.engine, r.model, r.status, steps(r.params or {}),
          usable(r.verdict or {}), (r.verdict or {}).get("knee")] for r in runs],
    )
    return 0


async def _load(ctx: Context, run_id: int) -> RunView:
    from console.probe.report import RunView

    run = await (await ctx.store()).probes.get(run_id)
    if run is None:
        raise ConfigError(f"no probe run {run_id}", hint="see `enginedeck probe history`")
    return RunView.from_stored(run)


async def _show(args: argparse.Namespace, ctx: Context, run_id: int) -> int:
    _print_view(args, await _load(ctx, run_id))
    return 0


async def _compare(args: argparse.Namespace, ctx: Context, a_id: int, b_id: int) -> int:
    from console.commands.output import Col, print_json, print_table
    from console.probe.report import compare_key, compare_rows

    a, b = await _load(ctx, a_id), await _load(ctx, b_id)
    by = compare_key(a, b)
    rows = compare_rows(a, b)
    if args.json:
        print_json({"a": _summary(a), "b": _summary(b), "by": by, "levels": rows})
        return 0
    print(f"A = run {a.run_id}: {_who(a)}")
    print(f"B = run {b.run_id}: {_who(b)}")
    if by == "rate":
        print(f"max sustainable rate: A {usable(a.verdict.to_dict())}  B {usable(b.verdict.to_dict())}")
        # The open loop's answer first: what the engine achieved and what met every SLO at each offered rate.
        groups: tuple[tuple[int, tuple[str, ...]], ...] = (
            (8, ("TTFT p90 A", "B", "Δ")), (7, ("ACHIEVED A", "B", "Δ")), (6, ("GOODPUT A", "B", "Δ")),
            (5, ("ERR A", "B")))
    else:
        print(f"max usable concurrency: A {or_dash(a.verdict.max_usable_concurrency)}  "
              f"B {or_dash(b.verdict.max_usable_concurrency)}   knee: A {or_dash(a.verdict.knee)}  "
              f"B {or_dash(b.verdict.knee)}")
        groups = ((8, ("TTFT p90 A", "B", "Δ")), (6, ("TOK/S A", "B", "Δ")), (5, ("DECODE p10 A", "B", "Δ")),
                  (9, ("ERR A", "B")))
    # A figure's A, B and Δ share a priority, so at 80 columns a figure goes whole (rightmost first).
    headers = [Col("RATE" if by == "rate" else "C", keep=10, right=True),
               *(Col(h, keep=keep, right=True) for keep, group in groups for h in group)]
    table = []
    for r in rows:
        t = r["ttft_p90_s"]
        if by == "rate":
            step, second, third = f"{r['rate']:g}/s", r["req_s"], r["goodput"]
            digits = 2
        else:
            step, second, third = r["concurrency"], r["agg_tok_s"], r["decode_p10_tok_s"]
            digits = 1
        table.append([
            step, millis(t["a"]), millis(t["b"]), change(t["delta_pct"]),
            number(second["a"], digits), number(second["b"], digits), change(second["delta_pct"]),
            number(third["a"], digits), number(third["b"], digits), change(third["delta_pct"]),
            rate(r["error_rate"]["a"]), rate(r["error_rate"]["b"]),
        ])
    print_table(headers, table)
    return 0


# -- printing ---------------------------------------------------------------------------------------------

# The text table: the verdict's figures (TTFT p90 and its interval, decode p10, errors, SLO attainment, SLO) stay
# at 80 columns; each TTFT column names its figure, since the one before it may be left out. Keep priorities by
# LEVEL_HEADERS, for a closed-loop run and for an open-loop one (offered rate, achieved rate, goodput, send lag).
LEVEL_KEEP = {
    "closed": (10, 7, 9, 4, 9, 8, 3, 5, 2, 1, 8, 4, 7, 3, 6, 7, 6, 0, 0, 10),
    "open": (10, 5, 9, 4, 9, 8, 3, 2, 1, 1, 6, 3, 2, 9, 8, 7, 2, 9, 7, 10),
}
LEVEL_TITLES = ("C", "OK", "ERR", "TTFT p50", "TTFT p90", "p90 95% CI", "TTFT p99", *LEVEL_HEADERS[7:])


def _print_view(args: argparse.Namespace, view: RunView, out: TextIO | None = None) -> None:
    from console.commands.output import print_json, print_table

    out = out or sys.stdout
    if args.json:
        print_json(view.document(), out)
        return
    if getattr(args, "csv", False):
        writer = csv.writer(out)
        writer.writerow(["phase", *(h.lower().replace(" ", "_").replace("%", "") for h in LEVEL_HEADERS)])
        for f in view.levels:
            writer.writerow([f.phase, *level_row(f, view.passed(f))])
        return
    if getattr(args, "markdown", False):
        out.write(f"**{_who(view)}** — run {or_dash(view.run_id)}, {view.status}\n\n")
        out.write("| " + " | ".join(LEVEL_HEADERS) + " |\n|" + "---|" * len(LEVEL_HEADERS) + "\n")
        for f in view.levels:
            out.write("| " + " | ".join(level_row(f, view.passed(f))) + " |\n")
        out.write("\n" + "\n".join(f"- {line}" for line in verdict_lines(view)) + "\n")
        return
    out.write(f"{_who(view)} — run {or_dash(view.run_id)}, {view.status}\n")
    from console.commands.output import Col

    keep = LEVEL_KEEP["open" if any(f.phase == "open" for f in view.levels) else "closed"]
    columns = [Col(title, keep=k, right=title != "SLO") for title, k in zip(LEVEL_TITLES, keep, strict=True)]
    print_table(columns, [level_row(f, view.passed(f)) for f in view.levels], out)
    for line in verdict_lines(view):
        out.write(line + "\n")
    for w in view.warnings:
        out.write(f"warning: {one_line(w)}\n")
    for f in view.levels:
        if f.energy:
            e = f.energy
            per_token = f"{e['j_per_token']:.3f} J/token" if e.get("j_per_token") is not None else "no token count"
            out.write(f"energy c={f.concurrency}: {per_token} ({e['net_j']:.1f} J net of idle {e['idle_w']:.0f} W "
                      f"over {e['window_s']:.1f} s; {e['gross_j']:.1f} J gross, {e['method']})\n")
    if any(f.phase in ("bisection", "noise") for f in view.levels):
        out.write(PHASE_LEGEND + "\n")
    out.write("95% CI: bootstrap of the percentile; SLO MET: share meeting every SLO, with its Wilson 95% interval. "
              "ITL marked ICL is per chunk (the engine did not count tokens per chunk). Definitions: docs/probe.md\n")


async def _meter(args: argparse.Namespace) -> EnergyMeter | None:
    from console.telemetry.energy import box_meter

    return await box_meter() if getattr(args, "energy", False) else None


def _who(view: RunView) -> str:
    version = f" {view.engine_version}" if view.engine_version else ""
    return neutralise(f"{view.engine} ({view.engine_kind or '?'}{version}) · {view.model}")


def _summary(view: RunView) -> dict[str, Any]:
    return {"run_id": view.run_id, "engine": view.engine, "engine_kind": view.engine_kind, "model": view.model,
            "status": view.status, "max_usable_concurrency": view.verdict.max_usable_concurrency,
            "max_rate": view.verdict.max_rate, "knee": view.verdict.knee, "slo": dict(view.slo)}


def _iso(ts: float, *, short: bool = False) -> str:
    when = datetime.fromtimestamp(ts, UTC).astimezone()
    return when.strftime("%Y-%m-%d %H:%M") if short else when.isoformat(timespec="seconds")


