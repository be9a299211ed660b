"""What keeps one screen's bug from taking the whole console down.

Textual treats an exception that escapes a handler as fatal: it prints the traceback and exits, and a handler
that fails inside a widget's message loop ends that loop (Textual's issue 2818: overriding `_handle_exception`
alone leaves a dead screen behind). An operator at 3 a.m. loses the chat they were in and whatever the other
screens were doing. So the app catches at the places where its own code runs, before Textual sees the error:

- every action (keys, the palette, clicks on the key bar) goes through `EngineDeckApp.run_action`;
- every screen's message handlers and callbacks, and the failure of any of its workers, go through
  `guard_screen` (a wrapper around the screen's `_on_message`, installed by the app on every screen it shows);
- whatever else reaches Textual's own handler (a widget's handler, a timer) is reported there too, and only an
  error in the app's own message loop still ends the program.

Each report is one line on screen (neutralised: an error may quote an engine's words) and the full traceback in
a bounded log file in the data directory.
"""

from __future__ import annotations

import io
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.logs.sanitize import neutralise, one_line
from console.ui.textual_compat import wrap_message_handler

if TYPE_CHECKING:
    from textual.app import App
    from textual.message import Message
    from textual.screen import Screen

    from console.ui.textual_compat import Handler

LOG_NAME = "ui-errors.log"
LOG_MAX_BYTES = 256 * 1024  # this file and one older copy: a few hundred tracebacks at most
REPEAT_QUIET_S = 10.0  # the same notice again within this time is logged, not shown again

Report = Callable[[str, BaseException], None]


class CrashReporter:
    """Logs a traceback and shows one line. The log file is opened on the first report, never at start-up."""

    strict = False
    """Tests set this: a report then also fails the app the way Textual would, so no bug hides behind a notice."""

    def __init__(self, app: App[Any], log_dir: Path, fatal: Callable[[BaseException], None]) -> None:
        """`fatal` is Textual's own handling (print the traceback and exit), used in strict mode."""
        self._app = app
        self._fatal = fatal
        self.path = log_dir / LOG_NAME
        self._logger: logging.Logger | None = None
        self._log_problem: str | None = None
        self._last: tuple[str, float] = ("", float("-inf"))
        self.reports: list[str] = []
        """The one-line text of every report, newest last (bounded like the notices: repeats are not added)."""

    def report(self, where: str, error: BaseException) -> None:
        text = one_line(f"{where}: {type(error).__name__}: {error}", 200)
        self._log(where, error)
        now = time.monotonic()
        if self._last[0] == text and now - self._last[1] < REPEAT_QUIET_S:
            return
        self._last = (text, now)
        if len(self.reports) < 100:
            self.reports.append(text)
        detail = f"details in {self.path}" if self._log_problem is None else f"not logged: {self._log_problem}"
        self._app.notify(f"{text}\n{one_line(detail)}", title="Something went wrong; the console goes on",
                         severity="error", timeout=15, markup=False)
        if self.strict:
            self._fatal(error)

    def _log(self, where: str, error: BaseException) -> None:
        logger = self._logger or self._open()
        if logger is None:
            return
        lines = "".join(traceback.format_exception(error))
        try:
            logger.error("%s\n%s", neutralise(where), neutralise(lines))
        except OSError as exc:  # the disk filled up since the file was opened
            self._log_problem = str(exc)

    def _open(self) -> logging.Logger | None:
        if self._log_problem is not None:
            return None
        from logging.handlers import RotatingFileHandler

        class PrivateFile(RotatingFileHandler):
            """Mode 600, like the database and the audit key beside it: a traceback may show paths and names."""

            def _open(self) -> io.TextIOWrapper:
                fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                return open(fd, "a", encoding=self.encoding, errors=self.errors)

        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handler = PrivateFile(self.path, maxBytes=LOG_MAX_BYTES, backupCount=1, encoding="utf-8")
        except OSError as exc:  # a read-only or full data directory: the notice says so, the console goes on
            self._log_problem = f"{self.path}: {exc.strerror or exc}"
            return None
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.Logger("enginedeck.ui", logging.ERROR)  # not in logging's tree: never to stderr
        logger.addHandler(handler)
        self._logger = logger
        return logger

    def close(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)


def screen_name(screen: Screen[Any]) -> str:
    return screen.title or type(screen).__name__


def guard_screen(screen: Screen[Any], report: Report) -> None:
    """Make a handler, callback or worker of this screen that fails report instead of ending the app.

    Wraps the instance's `_on_message` (every event and message of the screen, callbacks included, goes through
    it), so the screen's own class is untouched and the same guard covers screens from every module.
    """
    from textual.worker import Worker, WorkerState

    def wrap(handle: Handler) -> Handler:
        async def guarded(message: Message) -> None:
            try:
                await handle(message)
            except Exception as error:  # the point: one bug must not end the console
                report(f"{screen_name(screen)} ({type(message).__name__})", error)
            if isinstance(message, Worker.StateChanged) and message.state is WorkerState.ERROR \
                    and isinstance(message.worker.error, BaseException):
                report(f"{screen_name(screen)} ({message.worker.name or 'worker'})", message.worker.error)

        return guarded

    wrap_message_handler(screen, wrap)
