"""`enginedeck load | unload | swap | pull | delete`: change what an engine holds, through `Actions`.

Every action goes through `console.actions.Actions`, so --read-only refuses it, the engine's capabilities are
settled and checked, a second action on the same engine (from any enginedeck process) is refused, and the action
lands in the model events and the audit trail exactly as from the TUI, with the engine's state read back after
a failure. Ctrl+C during an action cancels it through `Actions.cancel`: the state is read back, recorded and
printed, and the exit code is 130; a second ctrl+c interrupts at once (the record is still written, with
`unknown: interrupted before the engine was read` if the state had not been read back yet).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from console.actions import ActionCancelledError
from console.argtypes import positive_int
from console.commands.output import print_json, rewrite_line
from console.errors import ConfigError, EngineDeckError
from console.fit.predict import CACHE_BYTES
from console.logs.sanitize import neutralise, one_line
from console.present.format import human_bytes

if TYPE_CHECKING:
    from console.actions import Actions
    from console.engines.base import Engine, PullProgress, SwapResult
    from console.services import Context

ENGINE_HELP = "a configured name, a name from `enginedeck engines`, or a URL"
KEEP_ALIVE_HELP = "how long the model stays loaded: 5m, 1h, 0 (unload after use), -1 (forever); Ollama only"
EXIT_CANCELLED = 130  # like a shell's 128 + SIGINT: the action was stopped by ctrl+c


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    def engine_command(name: str, help: str, handler: Any, *models: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help)
        p.add_argument("engine", metavar="ENGINE", help=ENGINE_HELP)
        for dest in models:
            p.add_argument(dest, metavar=dest.upper())
        p.set_defaults(handler=handler)
        return p

    load = engine_command("load", "load a model into memory", _cancellable(run_load), "model")
    load.add_argument("--keep-alive", metavar="D", type=keep_alive, help=KEEP_ALIVE_HELP)
    load.add_argument("--dry-run", action="store_true",
                      help="load nothing: predict the memory it needs against what is free (exit 1: will not fit)")
    load.add_argument("--ctx", metavar="N", type=positive_int,
                      help="with --dry-run: tokens per slot (default: what the engine is set to)")
    load.add_argument("--slots", metavar="N", type=positive_int,
                      help="with --dry-run: parallel sequences (default: what the engine is set to)")
    load.add_argument("--cache-type", metavar="T", choices=sorted(CACHE_BYTES),
                      help="with --dry-run: KV cache type (f16, q8_0, q4_0, ...; default f16)")
    load.add_argument("--on", choices=("gpu", "cpu"),
                      help="with --dry-run: where the model will live (default: the GPU when NVML sees one)")
    engine_command("unload", "unload a model from memory", _cancellable(run_unload), "model")
    engine_command("swap", "unload OLD, load NEW, time its first token; put OLD back if NEW fails",
                   _cancellable(run_swap), "old", "new").add_argument("--keep-alive", metavar="D", type=keep_alive,
                                                                      help=KEEP_ALIVE_HELP)
    engine_command("pull", "download a model (progress on stderr)", _cancellable(run_pull), "model")
    engine_command("delete", "delete a model from the engine's disk", _cancellable(run_delete), "model").add_argument(
        "--yes", "-y", action="store_true", help="do not ask (required when stdin is not a terminal)")


Handler = Callable[[argparse.Namespace, "Context"], Coroutine[Any, Any, int]]


def _cancellable(handler: Handler) -> Handler:
    """A cancelled action is not a failure to explain with a hint: it prints its verified outcome, exit 130."""
    async def run(args: argparse.Namespace, ctx: Context) -> int:
        try:
            return await handler(args, ctx)
        except ActionCancelledError as exc:
            print(f"enginedeck: {one_line(str(exc), 600)}", file=sys.stderr)
            return EXIT_CANCELLED

    return run


@contextlib.contextmanager
def _ctrl_c_cancels(actions: Actions, engine: Engine) -> Iterator[None]:
    """While the action runs, the first ctrl+c cancels it through `actions` (which reads back and records what
    the engine did); the handler is then the one before, so a second ctrl+c interrupts as it always does."""
    previous = signal.getsignal(signal.SIGINT)
    if (threading.current_thread() is not threading.main_thread()
            or previous is None or previous == signal.SIG_IGN):
        # Only the main thread may set handlers; None is a handler not set from Python, and an ignored SIGINT
        # (a job started in the background) was ignored on purpose: leave both be.
        yield
        return
    loop = asyncio.get_running_loop()

    def on_sigint(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, previous)
        loop.call_soon_threadsafe(actions.cancel, engine)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
    if args.dry_run:
        return await _dry_run(args, ctx)
    if args.ctx or args.slots or args.cache_type or args.on:
        raise ConfigError("--ctx, --slots, --cache-type and --on go with --dry-run",
                          hint="the engine's own settings decide a real load")
    actions, engine = await _prepare(args, ctx)
    with _ctrl_c_cancels(actions, engine):
        seconds = await _timed(actions.load(engine, args.model, args.keep_alive))
    await actions.record_fit(engine, args.model)
    return _model_done(args, actions, engine, "load", seconds,
                       f"loaded {_name(args.model)} on {_name(engine.name)} in {seconds:.2f} s",
                       keep_alive=args.keep_alive)


async def _dry_run(args: argparse.Namespace, ctx: Context) -> int:
    """Predicted need against free memory; nothing is loaded, so no lock, no audit record, --read-only is fine."""
    from console.fit.plan import WONT_FIT
    from console.fitting import will_it_fit
    from console.present.fit import fit_json, fit_line

    engine = await ctx.engine(args.engine)
    try:
        store = await ctx.store()
    except EngineDeckError:
        store = None  # an unwritable history: the default overhead instead of the fitted one
    answer = await will_it_fit(engine, args.model, store, context=args.ctx, slots=args.slots, cache=args.cache_type,
                               device=args.on)
    if args.json:
        print_json(fit_json(answer))
    else:
        print(f"{_name(args.model)} on {_name(engine.name)}: {fit_line(answer)}")
        for note in answer.notes:
            print(f"  note: {one_line(note, 300)}")
    return 1 if answer.verdict == WONT_FIT else 0


async def run_unload(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    with _ctrl_c_cancels(actions, engine):
        seconds = await _timed(actions.unload(engine, args.model))
    return _model_done(args, actions, engine, "unload", seconds,
                       f"unloaded {_name(args.model)} from {_name(engine.name)} in {seconds:.2f} s")


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


async def run_swap(args: argparse.Namespace, ctx: Context) -> int:
    actions, engine = await _prepare(args, ctx)
    with _ctrl_c_cancels(actions, engine):
        r = await actions.swap(engine, args.old, args.new, args.keep_alive)
    if r.ok:
        await actions.record_fit(engine, args.new)  # a swap is a load too (docs/fit.md, "Calibration")
    result = {"action": "swap", "engine": engine.name, "old": r.old, "new": r.new, "ok": r.ok,
              "unload_s": r.unload_s, "load_s": r.load_s, "first_token_s": r.first_token_s,
              "rolled_back": r.rolled_back, "error": r.error, "verified": r.outcome,
              "loaded_now": None if r.loaded_now is None else list(r.loaded_now)}
    if r.ok:
        return _done(args, actions, result,
                     f"swapped {_name(args.old)} → {_name(args.new)} on {_name(engine.name)}: unload "
                     f"{_secs(r.unload_s)}, load {_secs(r.load_s)}, first token {_secs(r.first_token_s)}")
    result["warnings"] = list(actions.warnings)
    if args.json:
        print_json(result)
    raise EngineDeckError(f"swap to {args.new} on {engine.name} failed: {r.error}; {_after_swap(args.old, r)}")


def _after_swap(old: str, r: SwapResult) -> str:
    """What a failed swap left, as read back from the engine (not as the swap believed)."""
    if r.loaded_now is None:
        return f"verified afterwards: {r.outcome or 'not read back'}"
    if old in r.loaded_now:
        return f"{old} is loaded again (verified afterwards: {r.outcome})"
    return f"{old} is not loaded (verified afterwards: {r.outcome})"


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
            rewrite_line(self.out, line)
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
        with _ctrl_c_cancels(actions, engine):
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

        await actions.check(Op.DELETE, engine)  # asking first and refusing after would waste the answer
        if not sys.stdin.isatty():
            raise EngineDeckError(f"delete {args.model} needs --yes when stdin is not a terminal")
        if not await _confirm(f"Delete {neutralise(args.model)} from {neutralise(engine.name)}? [y/N] "):
            raise EngineDeckError(f"{args.model} was not deleted (not confirmed)")
    with _ctrl_c_cancels(actions, engine):
        seconds = await _timed(actions.delete(engine, args.model))
    return _model_done(args, actions, engine, "delete", seconds,
                       f"deleted {_name(args.model)} from {_name(engine.name)}")


async def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = await asyncio.to_thread(sys.stdin.readline)
    return answer.strip().lower() in ("y", "yes")
