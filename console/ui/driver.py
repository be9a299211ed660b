"""A terminal driver whose input thread sleeps while nothing is typed.

Textual's LinuxDriver wakes its input thread ten times a second, only to ask the key parser whether a lone ESC
has waited long enough to be the escape key. A wake-up costs 70–130 µs of CPU on the virtual machines we
measured, so that thread was ~1.2 ms a second, a fifth of the idle dashboard's CPU (docs/performance.md). This
driver waits in select() for input, for the parser's own deadline while it holds an unfinished sequence, or for
a byte on a wake pipe that `exit_event.set()` writes, so quitting and suspending stay immediate.

It leans on private names of Textual, all in console/ui/textual_compat.py: its input parser (without it the app
uses Textual's own driver) and the parser's deadline on Textual's clock (without them the thread falls back to
Textual's 0.1 s tick). tests/ui/test_textual_drift.py fails when one is missing, so an upgrade that moves them is
noticed rather than silently costing CPU.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from codecs import getincrementaldecoder
from typing import TYPE_CHECKING, Any

from textual.drivers.linux_driver import LinuxDriver

from console.ui import textual_compat

if TYPE_CHECKING:
    from textual.app import App

TEXTUAL_TICK_S = 0.1  # what LinuxDriver waits between ticks; used only when the parser's deadline is unknown
READ_BYTES = 4096


class WakingEvent(threading.Event):
    """An Event with a pipe: `set()` also writes a byte to it, to wake a thread blocked in select() on `fileno()`."""

    def __init__(self) -> None:
        super().__init__()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def fileno(self) -> int:
        return self._read_fd

    def set(self) -> None:
        super().set()
        # A full pipe means the thread has a wake-up waiting already; -1 means closed (never write to a number
        # the process may have given to another file since).
        if self._write_fd >= 0:
            with contextlib.suppress(BlockingIOError):
                os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, READ_BYTES):
                pass

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1


def parser_wait_s(parser: object) -> float | None:
    """How long the input thread may sleep: until the parser's deadline, forever when it has none."""
    return textual_compat.parser_wait_s(parser, TEXTUAL_TICK_S)


class QuietLinuxDriver(LinuxDriver):
    def __init__(self, app: App[Any], *, debug: bool = False, mouse: bool = True,
                 size: tuple[int, int] | None = None) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        self.debug_input = debug
        self.exit_event: WakingEvent = WakingEvent()

    def run_input_thread(self) -> None:
        selector = selectors.SelectSelector()  # as Textual: epoll refuses a stdin that is a regular file
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self.exit_event, selectors.EVENT_READ)
        parser = textual_compat.xterm_parser(self.debug_input)
        if parser is None:  # the app picks Textual's own driver then (EngineDeckApp.get_driver_class)
            raise RuntimeError("Textual's input parser moved: use Textual's own driver")
        decode = getincrementaldecoder("utf-8")().decode

        def handle(ready: list[tuple[selectors.SelectorKey, int]], *, final: bool = False) -> None:
            for key, _mask in ready:
                if key.fileobj is self.exit_event:
                    self.exit_event.drain()
                    continue
                data = os.read(self.fileno, READ_BYTES)
                if not data:  # stdin ended (piped): stop watching it, or select() would return at once forever
                    selector.unregister(self.fileno)
                    continue
                for event in parser.feed(decode(data, final=final)):
                    self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                handle(selector.select(parser_wait_s(parser)))
            handle(selector.select(0), final=True)  # what was typed before the exit, its last bytes decoded
        finally:
            selector.close()

    def close(self) -> None:
        super().close()
        self.exit_event.close()
