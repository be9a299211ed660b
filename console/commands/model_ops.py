"""`enginedeck load | unload | swap | pull | delete`: change what an engine holds, through `Actions`.

Every action goes through `console.actions.Actions`, so --read-only refuses it, the engine's capabilities are
checked, and the action lands in the model events and the audit trail exactly as from the TUI.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TextIO

from console.commands.output import human_bytes, print_json
from console.errors import EngineDeckError
from console.logs.sanitize import neutralise, one_line

if TYPE_CHECKING:
    from console.actions import Actions
    from console.commands.context import Context
    from console.engines.base import Engine, PullProgress

ENGINE_HELP = "a configured name, a name from `enginedeck engines`, or a URL"
KEEP_ALIVE_HELP = "how long the model stays loaded: 5m, 1h, 0 (unload after use), -1 (forever); Ollama only"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    def engine_command(name: str, help: str, handler: Any, *models: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help)
        p.add_argument("engine", metavar="ENGINE", help=ENGINE_HELP)
        for dest in models:
            p.add_argument(dest, metavar=dest.upper())
        p.set_defaults(handler=handler)
        return p

    engine_command("load", "load a model into memory", run_load, "model").add_argument(
        "--keep-alive", metavar="D", type=keep_alive, help=KEEP_ALIVE_HELP)
    engine_command("unload", "unload a model from memory", run_unload, "model")
    engine_command("swap", "unload OLD, load NEW, time its first token; put OLD back if NEW fails", run_swap,
                   "old", "new").add_argument("--keep-alive", metavar="D", type=keep_alive, help=KEEP_ALIVE_HELP)
    engine_command("pull", "download a model (progress on stderr)", run_pull, "model")
    engine_command("delete", "delete a model from the engine's disk", run_delete, "model").add_argument(
        "--yes", "-y", action="store_true", help="do not ask (required when stdin is not a terminal)")


def keep_alive(text: str) -> str | float:
    """A number means seconds (Ollama reads a numeric string as a duration without a unit, and refuses it)."""
    try:
        value = float(text)
    except ValueError:
        if not text.strip():
            raise argparse.ArgumentTypeError("empty duration") from None
        return text.strip()
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds or a duration, not {text!r}")
    return int(value) if value.is_integer() else value


async def _prepare(args: argparse.Namespace, ctx: Context) -> tuple[Actions, Engine]:
    actions = await ctx.actions()
    return actions, await ctx.engine(args.engine)


def _done(args: argparse.Namespace, actions: Actions, result: dict[str, Any], line: str) -> int:
    result["warnings"] = list(actions.warnings)
    if args.json:
        print_json(result)
    else:
        print(line)
    for warning in actions.warnings:
        print(f"enginedeck: warning: {one_line(warning, 600)}", file=sys.stderr)
    return 0


def _model_done(args: argparse.Namespace, actions: Actions, engine: Engine, action: str, seconds: float,
                line: str, **extra: Any) -> int:
    """The result of an action on one model: the fields every such action reports, then its own."""
    return _done(args, actions, {"action": action, "engine": engine.name, "model": args.model, "ok": True,
                                 "seconds": round(seconds, 3), **extra}, line)


async def _timed(action: Awaitable[Any]) -> float:
    t0 = time.perf_counter()
    await action
    return time.perf_counter() - t0


def _name(text: str) -> str:
    """A model or engine name, as it may be printed (names come from the engine: untrusted)."""
    return one_line(text, 200)


async def run_load(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    seconds = await _timed(actions.load(engine, args.model, args.keep_alive))
    return _model_done(args, actions, engine, "load", seconds,
                       f"loaded {_name(args.model)} on {_name(engine.name)} in {seconds:.2f} s",
                       keep_alive=args.keep_alive)


async def run_unload(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    seconds = await _timed(actions.unload(engine, args.model))
    return _model_done(args, actions, engine, "unload", seconds,
                       f"unloaded {_name(args.model)} from {_name(engine.name)} in {seconds:.2f} s")


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


async def run_swap(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    r = await actions.swap(engine, args.old, args.new, args.keep_alive)
    result = {"action": "swap", "engine": engine.name, "old": r.old, "new": r.new, "ok": r.ok,
              "unload_s": r.unload_s, "load_s": r.load_s, "first_token_s": r.first_token_s,
              "rolled_back": r.rolled_back, "error": r.error}
    if r.ok:
        return _done(args, actions, result,
                     f"swapped {_name(args.old)} → {_name(args.new)} on {_name(engine.name)}: unload "
                     f"{_secs(r.unload_s)}, load {_secs(r.load_s)}, first token {_secs(r.first_token_s)}")
    result["warnings"] = list(actions.warnings)
    if args.json:
        print_json(result)
    outcome = (f"{args.old} is loaded again" if r.rolled_back
               else f"{args.old} could not be restored either, so neither model may be loaded")
    raise EngineDeckError(f"swap to {args.new} on {engine.name} failed: {r.error}; {outcome}")


class _Progress:
    """Pull progress on stderr: one line rewritten in place on a terminal, a plain line per step otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last_key: tuple[str, int] | None = None
        self.pending = False  # a rewritten line is on screen without its newline

    def show(self, p: PullProgress) -> None:
        status = one_line(p.status, 80)
        pct = int(100 * p.completed / p.total) if p.total and p.completed is not None else None
        line = status if pct is None else f"{status} {pct:3d}% {human_bytes(p.completed)}/{human_bytes(p.total)}"
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            self.pending = True
        else:
            # Without a terminal, one line per status and per 10% step keeps a log readable.
            key = (status, -1 if pct is None else pct // 10)
            if key == self.last_key:
                return
            self.last_key = key
            self.out.write(line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.pending:
            self.out.write("\n")
            self.out.flush()
            self.pending = False


async def run_pull(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    progress = _Progress(sys.stderr)
    last: PullProgress | None = None
    t0 = time.perf_counter()
    try:
        async for p in actions.pull(engine, args.model):
            last = p
            progress.show(p)
    finally:
        progress.end()
    seconds = time.perf_counter() - t0
    return _model_done(args, actions, engine, "pull", seconds,
                       f"pulled {_name(args.model)} on {_name(engine.name)} in {seconds:.1f} s",
                       status=last.status if last else None, total=last.total if last else None)


async def run_delete(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    if not args.yes:
        from console.engines.base import Op

        if actions.read_only or not engine.capabilities.supports(Op.DELETE):
            # Asking first and refusing after would waste the operator's answer: let Actions refuse now.
            await actions.delete(engine, args.model)
        if not sys.stdin.isatty():
            raise EngineDeckError(f"delete {args.model} needs --yes when stdin is not a terminal")
        if not await _confirm(f"Delete {neutralise(args.model)} from {neutralise(engine.name)}? [y/N] "):
            raise EngineDeckError(f"{args.model} was not deleted (not confirmed)")
    seconds = await _timed(actions.delete(engine, args.model))
    return _model_done(args, actions, engine, "delete", seconds,
                       f"deleted {_name(args.model)} from {_name(engine.name)}")


async def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = await asyncio.to_thread(sys.stdin.readline)
    return answer.strip().lower() in ("y", "yes")
