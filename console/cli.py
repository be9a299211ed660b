"""Entry point. `enginedeck` opens the TUI; `enginedeck COMMAND` runs headless on the same core.

Exit codes: 0 ok, 1 failure (one line on stderr, never a traceback), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from console import __version__
from console.argtypes import seconds

# Each module in console/commands/ defines register(subparsers, common) and sets `handler` on its parsers.
COMMAND_MODULES = ("fleet", "model_ops", "chat", "history", "probe", "logs", "audit", "doctor", "exporter",
                   "watch", "findings", "gateway", "usage", "traffic")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2 too; keep its one-line form
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(*, commands: bool = True) -> argparse.ArgumentParser:
    """The whole command line; `commands=False` leaves out the subcommands (and their imports), which is all
    that opening the TUI needs."""
    parser = _Parser(
        prog="enginedeck",
        description="Operations console for the LLM engines on this box. With no command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"enginedeck {__version__}")
    add_global_options(parser)
    parser.add_argument("--theme", help="TUI theme (dark, light, high-contrast, monochrome, or a user theme)")
    parser.add_argument("--ascii", action="store_true", default=None,
                        help="ASCII borders and no emoji (automatic on TERM=linux or vt100)")

    if not commands:
        return parser
    # Every subcommand accepts the global options too, so `enginedeck ps --json --no-discover` works.
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)
    common.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    common.add_argument("--raw", action="store_true",
                        help="print model and log text as received, control sequences included (default: inert)")
    common.add_argument("--wide", action="store_true", help="tables show every column whole, however wide")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"console.commands.{name}").register(sub, common)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", type=Path, default=default,
                        help="config file (default: $ENGINEDECK_CONFIG or the XDG config dir)")
    parser.add_argument("--engine", dest="engine_urls", action="append", metavar="URL", default=default,
                        help="add an engine by URL (repeatable)")
    parser.add_argument("--no-discover", dest="no_discover", action="store_true",
                        default=default if suppress else False,
                        help="do not scan the default ports on loopback")
    parser.add_argument("--timeout", type=seconds, metavar="SECONDS", default=default,
                        help="deadline of each request and of a stream's first byte and each pause; loads keep "
                             "load_timeout")
    parser.add_argument("--read-only", dest="read_only", action="store_true",
                        default=default if suppress else False,
                        help="refuse every mutating action (load, unload, swap, pull, delete, probe)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse without importing every command module when no command is named (the TUI's start-up path)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not {"-h", "--help"} & set(argv):
        args, rest = build_parser(commands=False).parse_known_args(argv)
        if not rest:
            return args
    return build_parser().parse_args(argv)


def _fail(message: str) -> int:
    from console.logs.sanitize import one_line

    print(f"enginedeck: {one_line(message, 600)}", file=sys.stderr)
    return EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up allocates a few hundred thousand objects that live as long as the process (Textual's classes,
    # the parser); collecting them only delays the first paint. The TUI turns the collector back on once it
    # has painted (EngineDeckApp.on_mount), a command before it runs.
    gc.disable()
    # httpx imports its own command-line client when click and rich are installed (rich comes with Textual):
    # ~40 ms of every start for a program enginedeck never runs. A None in sys.modules makes that import fail,
    # and httpx then leaves its client out (its __init__ catches the ImportError).
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None is what makes the import fail
    try:
        return _run(parse_args(argv))
    finally:
        gc.enable()


def _run(args: argparse.Namespace) -> int:
    from console.errors import ConfigError, EngineDeckError

    try:
        from console.services import Context

        handler = getattr(args, "handler", None)
        try:
            ctx = Context.from_args(args)
            if handler is None:  # the console's [keymap] is checked against its bindings before it starts
                from console.ui.start import check_keymap, run_tui

                check_keymap(ctx.config)
        except ConfigError as exc:  # a bad config file or variable is a usage error: nothing was tried
            _fail(str(exc))
            return EXIT_USAGE
        if handler is None:

            return run_tui(ctx)
        gc.enable()
        from console.commands.output import installed

        with installed(raw=getattr(args, "raw", False), wide=getattr(args, "wide", False)):
            return asyncio.run(ctx.run(handler(args, ctx)))
    except EngineDeckError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("enginedeck: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        # A reader of stdout or stderr that goes away is handled where they are written (commands/output.py),
        # and the command still exits with its own status; this is some other pipe: the command did not finish.
        return _fail(f"a pipe closed early: {exc}")
    except Exception as exc:  # the last line of defence: a person gets one line, a developer can ask for more
        if os.environ.get("ENGINEDECK_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (set ENGINEDECK_DEBUG=1 for a traceback)")
