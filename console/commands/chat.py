"""`enginedeck chat ENGINE MODEL ["prompt"]`: one streamed turn, saved to the history as it arrives.

The reply goes to stdout as it streams, inert (control sequences removed: see commands/output.py) whether stdout
is a terminal, a pipe or a file, unless --raw; reasoning and the figures line go to stderr, so
`enginedeck chat ... > answer.txt` keeps only the answer.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any, TextIO

from console.argtypes import fraction, non_negative
from console.engines.base import EventKind
from console.errors import EngineDeckError, StoreError
from console.logs.sanitize import one_line

if TYPE_CHECKING:
    from console.conversation import Conversation, Turn
    from console.services import Context
    from console.telemetry.energy import EnergyMeter


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("chat", parents=[common], help="send one prompt and stream the reply",
                       description="Send one prompt and stream the reply; figures (TTFT, tokens, tok/s) go to "
                                   "stderr. The turn is saved to the history unless --no-save.")
    p.add_argument("engine", metavar="ENGINE", help="a configured engine name or a URL")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("prompt", metavar="PROMPT", nargs="?", default="-",
                   help='the prompt; omitted or "-": read it from stdin')
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument("--temperature", type=non_negative)
    p.add_argument("--top-p", dest="top_p", type=fraction)
    p.add_argument("--max-tokens", dest="max_tokens", type=int)
    p.add_argument("--context-length", dest="context_length", type=int, help="context window (Ollama num_ctx)")
    p.add_argument("--keep-alive", dest="keep_alive", metavar="DURATION", help="Ollama keep_alive, e.g. 5m or -1")
    p.add_argument("--session", type=int, metavar="ID", help="continue this session of the history")
    p.add_argument("--no-save", dest="no_save", action="store_true", help="do not write to the history")
    p.add_argument("--energy", action="store_true",
                   help="measure the GPUs' energy: idle for 2 s first, then joules per output token (NVML)")
    p.set_defaults(handler=run)


def _prompt(args: argparse.Namespace) -> str:
    prompt: str = args.prompt
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise EngineDeckError("empty prompt", hint='give one as an argument or on stdin: enginedeck chat E M "hi"')
    return prompt


async def _conversation(args: argparse.Namespace, ctx: Context) -> tuple[Conversation, str | None]:
    """The session to talk in, and a warning when the history cannot be used (the chat still runs)."""
    from console.conversation import ChatParams, Conversation

    params = ChatParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                        context_length=args.context_length, keep_alive=args.keep_alive)
    store = None
    warning = None
    if not args.no_save:
        try:
            store = await ctx.store()
        except StoreError as exc:
            if args.session is not None:
                raise
            warning = f"history is off for this chat: {exc}"
    if args.session is not None:
        if store is None:
            raise EngineDeckError("--session needs the history", hint="drop --no-save")
        conv = await Conversation.resume(store, args.session, read_only=ctx.config.read_only)
        conv.model = args.model
        conv.params = conv.params.merged(params)
        if args.system is not None:
            conv.system_prompt = args.system
        conv.energy = await _meter(args)
        return conv, warning
    return Conversation(store, model=args.model, system_prompt=args.system, params=params,
                        read_only=ctx.config.read_only, energy=await _meter(args)), warning


async def _meter(args: argparse.Namespace) -> EnergyMeter | None:
    from console.telemetry.energy import box_meter

    return await box_meter() if args.energy else None


async def run(args: argparse.Namespace, ctx: Context) -> int:
    prompt = _prompt(args)
    conv, warning = await _conversation(args, ctx)
    engine = await ctx.engine(args.engine)
    turn = conv.send(engine, prompt)
    out, err = sys.stdout, sys.stderr
    if warning:
        print(f"enginedeck: {one_line(warning)}", file=err)
    thinking = False  # reasoning is on stderr and has not been closed with a newline yet
    events = aiter(turn)
    async with contextlib.aclosing(events):  # Ctrl-C anywhere in the loop still marks the reply cancelled
        async for event in events:
            if args.json:
                continue
            if event.kind is EventKind.CONTENT:
                thinking = _end_thinking(err, thinking)
                _write(out, event.text)
            elif event.kind is EventKind.REASONING:
                _write(err, event.text)
                thinking = not event.text.endswith("\n")
    _end_thinking(err, thinking)
    if args.json:
        _print_json(turn, conv)
    else:
        _report(turn, out, err)
    return 0 if turn.status == "complete" else 1


def _end_thinking(err: TextIO, thinking: bool) -> bool:
    if thinking:
        err.write("\n")
    return False


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _report(turn: Turn, out: TextIO, err: TextIO) -> None:
    if turn.content and not turn.content.endswith("\n"):
        out.write("\n")
        out.flush()
    line = turn.figures.describe()
    if turn.status == "cancelled":
        line += " · stopped"
    print(line, file=err)
    if (e := turn.figures.energy) is not None:
        per_token = f"{e.j_per_token:.3f} J/token" if e.j_per_token is not None else "no token count"
        print(f"energy: {per_token} ({e.net_j:.1f} J over {e.window_s:.2f} s less idle {e.idle_w:.0f} W; "
              f"{e.gross_j:.1f} J gross, {e.method}, {e.gpus} GPU(s))", file=err)
    if turn.status == "error":
        print(f"enginedeck: the reply broke off: {one_line(turn.error or '')}", file=err)
    if turn.store_warning:
        print(f"enginedeck: {one_line(turn.store_warning)}", file=err)


def _print_json(turn: Turn, conv: Conversation) -> None:
    from console.commands.output import print_json

    f = turn.figures
    print_json({
        "status": turn.status,
        "reply": turn.content,
        "reasoning": turn.reasoning,
        "error": turn.error,
        "engine": turn.engine.name,
        "model": conv.model,
        "session_id": conv.session_id,
        "message_id": turn.message_id,
        "ttft_ms": f.ttft_ms,
        "tokens_in": f.tokens_in,
        "tokens_out": f.tokens_out,
        "tok_s": f.tok_s,
        "token_source": f.token_source.value if f.token_source else None,
        "approximate": f.approximate,
        "done_reason": turn.done_reason,
        "store_warning": turn.store_warning,
        "energy": f.energy.to_dict() if f.energy else None,
    })
