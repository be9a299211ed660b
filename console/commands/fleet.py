"""`enginedeck engines`, `models [ENGINE]`, `ps [ENGINE]`: what runs, what it can serve, what is loaded; and
`enginedeck fleet`: the same over every host, from Prometheus (`[fleet] prometheus_url`) or this box alone.

Every engine is asked concurrently with its own deadline, so a dead host costs its timeout and nothing more.
With no ENGINE, one engine failing is reported (stderr, or `errors` in JSON) and the others still print; the
exit code is 1 only when every engine failed. A named ENGINE that fails exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from console.commands.output import Col, print_json, print_table, to_jsonable
from console.engines.poll import DEFAULT_DEADLINE_S
from console.logs.sanitize import one_line
from console.present.format import expires_in, human_bytes, vram_split

if TYPE_CHECKING:
    from console.engines.base import Engine, LoadedModel, ModelInfo
    from console.engines.poll import EngineStatus
    from console.engines.registry import EngineEntry
    from console.services import Context
    from console.watch.fleet import FleetView

T = TypeVar("T")
Item = TypeVar("Item", "ModelInfo", "LoadedModel")  # what `models` and `ps` list

# At 80 columns the names give way first (elided in the middle), then the columns with the lowest `keep`. An
# engine's name is what other commands take, so it keeps room for the names enginedeck makes (kind@host:port).
ENGINE_COLUMNS = (Col("NAME", "middle", keep=9, min=24), Col("URL", "middle", keep=3, min=16),
                  Col("KIND", keep=7), Col("VERSION", "end", keep=4, min=8), Col("HEALTH", keep=8),
                  Col("LATENCY", keep=5, right=True), Col("ERROR", "wrap", keep=6, min=20))
MODEL_COLUMNS = (Col("ENGINE", "middle", keep=8, min=12), Col("MODEL", "middle", keep=9, min=16),
                 Col("SIZE", keep=6, right=True), Col("PARAMS", keep=3), Col("QUANT", keep=4),
                 Col("CONTEXT", keep=5, right=True), Col("STATUS", keep=7))
PS_COLUMNS = (Col("ENGINE", "middle", keep=8, min=12), Col("MODEL", "middle", keep=9, min=16),
              Col("SIZE", keep=5, right=True), Col("VRAM", keep=6), Col("CONTEXT", keep=4, right=True),
              Col("UNTIL/STATUS", keep=7))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("engines", parents=[common], help="list engines: kind, version, health, latency")
    p.set_defaults(handler=run_engines)
    p = sub.add_parser("models", parents=[common], help="models each engine can serve (all engines by default)")
    p.add_argument("engine", nargs="?", metavar="ENGINE", help="a configured name, a name from `engines`, or a URL")
    p.set_defaults(handler=run_models)
    p = sub.add_parser("ps", parents=[common], help="models loaded now: size, VRAM, context, expiry")
    p.add_argument("engine", nargs="?", metavar="ENGINE", help="a configured name, a name from `engines`, or a URL")
    p.set_defaults(handler=run_ps)
    p = sub.add_parser("fleet", parents=[common], help="every host's engines, models, pressure, GPUs and alerts",
                       description="Every host's engines, models, pressure, GPUs, findings and firing alerts, from "
                                   "the Prometheus of [fleet] prometheus_url (which scrapes `enginedeck exporter` "
                                   "on each host); without it, this box alone.")
    p.add_argument("--host", metavar="GLOB", help="only the hosts whose name matches (shell pattern, e.g. 'gpu-*')")
    p.set_defaults(handler=run_fleet)


# Past the engine's own request deadline, so that when one request runs out, its error (which names the endpoint
# and the limit) is the one shown rather than this backstop's.
BACKSTOP_MARGIN_S = 0.5


def deadline(args: argparse.Namespace) -> float:
    """Each engine's deadline in engines/models/ps: --timeout (default 5 s), plus the backstop's margin."""
    timeout = getattr(args, "timeout", None)
    return (float(timeout) if timeout is not None else DEFAULT_DEADLINE_S) + BACKSTOP_MARGIN_S


def no_engine_message(ctx: Context) -> str:
    from console.config import default_config_path
    from console.engines.detect import DEFAULT_PORTS

    cfg = ctx.config
    scanned = (f"Scanned 127.0.0.1 on the default ports ({', '.join(map(str, DEFAULT_PORTS))})."
               if cfg.discover else "Discovery is off (--no-discover or discover = false).")
    return (
        f"No engine found. {scanned}\n"
        "Point enginedeck at one:  enginedeck --engine http://HOST:PORT COMMAND\n"
        f"or add an [[engines]] entry (name, url) to {cfg.path or default_config_path()}\n"
    )


# -- engines ------------------------------------------------------------------------------------------------------

async def run_engines(args: argparse.Namespace, ctx: Context) -> int:
    from console.engines.poll import poll_all

    entries = await ctx.registry().refresh()
    statuses = await poll_all([e.engine for e in entries if e.engine is not None], deadline_s=deadline(args))
    by_name: dict[str, EngineStatus] = {s.name: s for s in statuses}
    rows = [_engine_row(e, by_name.get(e.name)) for e in entries]
    if args.json:
        print_json({"engines": rows})
    elif not rows:
        sys.stdout.write(no_engine_message(ctx))
    else:
        print_table(ENGINE_COLUMNS, (
            (r["name"], r["url"], r["kind"], r["version"], r["health"],
             None if r["latency_ms"] is None else f"{r['latency_ms']:.0f} ms",
             (r["error"] or r["reason"] or "").removeprefix(f"{r['name']}: ") or None)
            for r in rows))
    return 0


def _engine_row(entry: EngineEntry, status: EngineStatus | None) -> dict[str, Any]:
    info = status.info if status is not None else None
    return {
        "name": entry.name, "url": entry.url, "kind": entry.kind, "source": entry.source,
        "version": (info.version if info else None) or entry.version,
        "health": info.health.value if info else "down",
        "reason": (info.reason or None) if info else None,
        "latency_ms": round(info.latency_ms, 1) if info and info.latency_ms is not None else None,
        "error": entry.error or (status.error if status is not None else None),
    }


# -- models and ps ------------------------------------------------------------------------------------------------

Gathered = tuple[list[tuple["Engine", T]], list[dict[str, str]], int]


async def _gather(args: argparse.Namespace, ctx: Context,
                  call: Callable[[Engine], Awaitable[list[T]]]) -> Gathered[T] | None:
    """`call` on the engine ENGINE names (its failure raises), or on every known engine at once, each within
    the deadline (failures listed). Returns (engine, item) rows, errors, how many engines answered; None when
    no engine is known at all."""
    from console.errors import EngineDeckError, EngineTimeoutError

    limit = deadline(args)
    if args.engine:
        engine = await ctx.engine(args.engine)
        try:
            items = await asyncio.wait_for(call(engine), timeout=limit)
        except TimeoutError:
            raise EngineTimeoutError(f"no answer within {limit:g} s", engine=engine.name,
                                     hint="raise --timeout") from None
        return [(engine, item) for item in items], [], 1
    entries = await ctx.registry().refresh()
    if not entries:
        return None
    engines = [e.engine for e in entries if e.engine is not None]
    errors = [{"engine": e.name, "error": e.error or "not available"} for e in entries if e.engine is None]

    async def one(engine: Engine) -> list[T] | str:
        try:
            return await asyncio.wait_for(call(engine), timeout=limit)
        except EngineDeckError as exc:
            return str(exc)
        except TimeoutError:
            return f"{engine.name}: no answer within {limit:g} s"

    rows: list[tuple[Engine, T]] = []
    answered = 0
    for engine, result in zip(engines, await asyncio.gather(*(one(e) for e in engines)), strict=True):
        if isinstance(result, str):
            errors.append({"engine": engine.name, "error": result})
        else:
            answered += 1
            rows.extend((engine, item) for item in result)
    return rows, errors, answered


def _finish(args: argparse.Namespace, errors: list[dict[str, str]], answered: int) -> int:
    """Per-engine errors to stderr (JSON carries them in `errors`); 1 only when no engine answered."""
    if not args.json:
        for err in errors:
            print(f"enginedeck: {one_line(err['error'], 600)}", file=sys.stderr)
    return 1 if errors and not answered else 0


async def _list_view(args: argparse.Namespace, ctx: Context, call: Callable[[Engine], Awaitable[list[Item]]],
                     key: str, headers: tuple[Col, ...], row: Callable[[Engine, Item], tuple[Any, ...]],
                     then: Callable[[list[tuple[Engine, Item]]], Awaitable[list[tuple[Engine, Item]]]] | None = None,
                     ) -> int:
    """`models` and `ps`: the items of ENGINE or of every engine (passed through `then`, if given), as JSON under
    `key` or as a table."""
    gathered = await _gather(args, ctx, call)
    if gathered is None:
        return _nothing(args, ctx, key)
    rows, errors, answered = gathered
    if then is not None:
        rows = await then(rows)
    if args.json:
        print_json({key: [_row_json(e, m) for e, m in rows], "errors": errors})
    else:
        print_table(headers, (row(e, m) for e, m in rows))
    return _finish(args, errors, answered)


def _row_json(engine: Engine, item: ModelInfo | LoadedModel) -> dict[str, Any]:
    return {"engine": engine.name, "kind": engine.kind, **to_jsonable(item)}


async def run_models(args: argparse.Namespace, ctx: Context) -> int:
    return await _list_view(
        args, ctx, lambda e: e.list_models(), "models",
        MODEL_COLUMNS,
        lambda e, m: (e.name, m.name, human_bytes(m.size) if m.size else None, m.parameter_size, m.quantization,
                      m.context_length, m.status))


async def run_ps(args: argparse.Namespace, ctx: Context) -> int:
    if args.json:
        return await _ps_json(args, ctx)
    from console.fitting import attribute_rows

    return await _list_view(
        args, ctx, lambda e: e.loaded_models(), "loaded",
        PS_COLUMNS,
        lambda e, m: (e.name, m.name, human_bytes(m.size) if m.size else None, _vram(m), m.context_length,
                      expires_in(m.expires_at) if m.expires_at else m.status),
        then=attribute_rows)


async def _ps_json(args: argparse.Namespace, ctx: Context) -> int:
    """`ps --json`: the loaded models and, per engine, its pressure (console/engines/pressure.py: the same figures
    and names as the dashboard and the exporter, each with its source or why it is missing). One poll per engine
    reads both."""
    from console.engines.poll import EngineStatus, read_load
    from console.engines.pressure import pressure_of
    from console.fitting import attribute_rows
    from console.gateway_feed import in_flight_of, read_gateways

    pressure: list[dict[str, Any]] = []
    # Running/waiting of engines that count none (Ollama): the configured gateways in front of them.
    in_flight = in_flight_of(await read_gateways(ctx.config)) if ctx.config.gateways else {}

    async def loaded(engine: Engine) -> list[LoadedModel]:
        models = await engine.loaded_models()  # its failure is the engine's error, as in the table
        load = await read_load(engine, deadline_s=deadline(args) - BACKSTOP_MARGIN_S)
        status = EngineStatus(engine.name, engine.base_url, engine.kind, info=None, loaded=tuple(models),
                              **vars(load))
        pressure.append({"engine": engine.name, "kind": engine.kind,
                         **pressure_of(status, in_flight.get(engine.name)).as_json()})
        return models

    gathered = await _gather(args, ctx, loaded)
    if gathered is None:
        print_json({"loaded": [], "pressure": [], "errors": []})
        return 0
    rows, errors, answered = gathered
    rows = await attribute_rows(rows)
    print_json({"loaded": [_row_json(e, m) for e, m in rows], "pressure": pressure, "errors": errors})
    return _finish(args, errors, answered)


def _vram(m: LoadedModel) -> str | None:
    if m.size_vram is None:
        return None
    if m.size_vram_source and m.size_vram_source != "engine":  # the engine's processes, not a split of its size
        return f"{human_bytes(m.size_vram)} ({m.size_vram_source.split(':', 1)[0]})"
    split = vram_split(m.size, m.size_vram)
    return f"{human_bytes(m.size_vram)} ({split})" if m.size else human_bytes(m.size_vram)


def _nothing(args: argparse.Namespace, ctx: Context, key: str) -> int:
    if args.json:
        print_json({key: [], "errors": []})
    else:
        sys.stderr.write(no_engine_message(ctx))
    return 0


# -- fleet --------------------------------------------------------------------------------------------------------

FLEET_ENGINE_COLUMNS = (Col("HOST", "middle", keep=9, min=12), Col("ENGINE", "middle", keep=8, min=12),
                        Col("KIND", keep=5), Col("UP", keep=8), Col("LATENCY", keep=3, right=True),
                        Col("RUN", keep=6, right=True), Col("WAIT", keep=6, right=True), Col("KV", keep=5, right=True),
                        Col("MODELS", "end", keep=7, min=16))
FLEET_GPU_COLUMNS = (Col("HOST", "middle", keep=9, min=12), Col("GPU", keep=8), Col("NAME", "end", keep=3, min=8),
                     Col("MEMORY", keep=7), Col("UTIL", keep=6, right=True), Col("TEMP", keep=6, right=True),
                     Col("POWER", keep=4, right=True))


async def run_fleet(args: argparse.Namespace, ctx: Context) -> int:
    from console.watch.fleet import as_json

    view = await _fleet_view(args, ctx)
    if args.json:
        print_json(as_json(view))
    else:
        _print_fleet(view)
        for error in view.errors:
            print(f"enginedeck: {one_line(error, 600)}", file=sys.stderr)
    # Nothing came back at all: Prometheus (or this box's collection) failed, not a host.
    return 1 if view.errors and not view.hosts else 0


async def _fleet_view(args: argparse.Namespace, ctx: Context) -> FleetView:
    from console.watch.fleet import local_view, prometheus_view

    fleet = ctx.config.fleet
    if fleet.prometheus_url is None:
        from console.commands.exporter import build_collector, host_name

        collector = build_collector(ctx, deadline(args))
        try:
            snap = await collector.collect()
        finally:
            collector.close()
            if collector.gpu is not None:
                collector.gpu.close()
        return local_view(snap, host=host_name(args, ctx), host_filter=args.host)
    from console.engines.prometheus import PrometheusClient

    client = PrometheusClient(fleet.prometheus_url, timeouts=ctx.config.timeouts, limits=ctx.config.limits,
                              max_series=fleet.max_series)
    try:
        return await prometheus_view(client, host_filter=args.host, deadline_s=deadline(args))
    finally:
        await client.aclose()


def _print_fleet(view: FleetView) -> None:
    from console.present.format import human_bytes, latency, pct

    def num(value: float | None) -> str | None:
        return None if value is None else f"{value:g}"

    engines: list[tuple[str | None, ...]] = []
    gpus: list[tuple[str | None, ...]] = []
    for h in view.hosts:
        if not h.engines:
            engines.append((h.name, None, None, "unreachable" if h.reachable is False else "no engine",
                            None, None, None, None, None))
        for e in sorted(h.engines.values(), key=lambda e: e.name):
            models = ", ".join(m.name if m.count == 1 else f"{m.name} ({m.count:g})" for m in e.models)
            engines.append((h.name, e.name, e.kind, (e.health or "up") if e.up else "down", latency(e.latency_s),
                            num(e.running), num(e.waiting), pct(e.kv_cache_usage, ratio=True) if e.kv_cache_usage
                            is not None else None, models or None))
        for g in sorted(h.gpus.values(), key=lambda g: (g.source, g.index)):
            memory = (f"{human_bytes(g.mem_used_bytes)} / {human_bytes(g.mem_total_bytes)}"
                      if g.mem_used_bytes is not None else None)
            gpus.append((h.name, g.index if g.source == "enginedeck" else f"{g.index} (dcgm)", g.name or None, memory,
                         pct(g.utilization, ratio=True) if g.utilization is not None else None,
                         None if g.temperature_c is None else f"{g.temperature_c:.0f}°C",
                         None if g.power_w is None else f"{g.power_w:.0f} W"))
    print(f"fleet from {view.source}: {len(view.hosts)} host{'s' if len(view.hosts) != 1 else ''}"
          f"{' (cut at [fleet] max_series)' if view.truncated else ''}")
    print_table(FLEET_ENGINE_COLUMNS, engines)
    if gpus:
        print()
        print_table(FLEET_GPU_COLUMNS, gpus)
    notes = [(h.name, f"finding {f['kind']} on {f['engine']}" + (f" ({f['count']:g})" if f["count"] != 1 else ""))
             for h in view.hosts for f in h.findings if isinstance(f["count"], float | int)]
    notes += [(h.name, "alert " + a.get("alertname", "?")) for h in view.hosts for a in h.alerts]
    notes += [("(fleet)", "alert " + a.get("alertname", "?")) for a in view.alerts]
    for host, note in notes:
        print(f"{host}: {note}")
