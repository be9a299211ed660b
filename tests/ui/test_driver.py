"""The terminal driver: its input thread sleeps while nothing is typed, still turns a lone ESC into the escape
key, and wakes at once to stop; the app uses it in a real terminal. The last test runs enginedeck on a pty."""

from __future__ import annotations

import asyncio
import os
import pty
import selectors
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest
from textual import events
from textual._xterm_parser import XTermParser

from console.ui.app import EngineDeckApp
from console.ui.driver import TEXTUAL_TICK_S, QuietLinuxDriver, WakingEvent, parser_wait_s
from tests.ui.fixtures import TestContext, make_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the POSIX terminal driver")


def test_the_parser_deadline_is_where_the_driver_reads_it():
    parser = XTermParser(False)
    assert parser_wait_s(parser) is None  # nothing pending: sleep until input
    list(parser.feed("\x1b"))  # a lone ESC: the parser waits a moment for the rest of a sequence
    wait = parser_wait_s(parser)
    assert wait is not None and 0 < wait <= 1.0
    list(parser.feed("[A"))  # the rest came: an arrow key, nothing pending
    assert parser_wait_s(parser) is None
    assert parser_wait_s(object()) == TEXTUAL_TICK_S  # a Textual without the attribute: its own tick


def test_a_waking_event_wakes_a_select_and_never_writes_after_close():
    event = WakingEvent()
    with selectors.SelectSelector() as selector:
        selector.register(event, selectors.EVENT_READ)
        assert selector.select(0) == []
        event.set()
        assert event.is_set() and len(selector.select(0)) == 1
        event.drain()
        assert selector.select(0) == []
    event.close()
    event.set()  # no write to a closed (and maybe reused) descriptor
    assert event.is_set()


class FakeApp:
    """What the driver talks to: it posts each key here from its thread."""

    def __init__(self, keys_wanted: int) -> None:
        self.keys: list[str] = []
        self.keys_wanted = keys_wanted
        self.got_keys = asyncio.Event()

    async def _post_message(self, message: object) -> bool:
        if isinstance(message, events.Key):
            self.keys.append(message.key)
            if len(self.keys) == self.keys_wanted:
                self.got_keys.set()
        return True


async def test_the_input_thread_sleeps_until_a_key_and_stops_at_once(monkeypatch):
    selects = []
    asleep = threading.Event()  # set each time the thread selects with no timeout
    real_select = selectors.SelectSelector.select

    def counted(self, timeout=None):
        selects.append(timeout)
        if timeout is None:
            asleep.set()
        return real_select(self, timeout)

    monkeypatch.setattr(selectors.SelectSelector, "select", counted)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT)}
    master, slave = pty.openpty()
    app = FakeApp(keys_wanted=2)
    driver = QuietLinuxDriver(app)  # type: ignore[arg-type]
    driver.fileno = slave
    thread = threading.Thread(target=driver.run_input_thread)
    thread.start()
    try:
        await asyncio.sleep(0.5)
        # Textual's driver would have selected five times by now (a 0.1 s tick); this one blocks in its first.
        assert selects == [None]

        asleep.clear()
        tty.setraw(slave)  # as the driver sets the terminal when it starts: keys come one by one, not by line
        os.write(master, b"q\x1b")
        await asyncio.wait_for(app.got_keys.wait(), 10)
        assert app.keys == ["q", "escape"]  # the lone ESC became the key once the parser's short wait ran out
        # The key is posted before the thread loops back to select: give it that moment, then it must sleep.
        assert await asyncio.to_thread(asleep.wait, 5)
        await asyncio.sleep(0.3)  # a thread still on Textual's tick would select about three more times here
        assert selects[-1] is None and len(selects) <= 4  # back to sleeping without a tick

        driver.exit_event.set()
        thread.join(10)
        assert not thread.is_alive()  # the exit woke it at once
    finally:
        driver.exit_event.set()  # a failed assertion must not leave the thread selecting on closed descriptors
        thread.join(10)
        driver.close()
        os.close(master)
        os.close(slave)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_the_app_uses_it_in_a_terminal_unless_textual_is_told_otherwise(tmp_path, monkeypatch):
    from textual import constants

    app = EngineDeckApp(TestContext(make_config(tmp_path)))
    assert app.get_driver_class() is QuietLinuxDriver
    monkeypatch.setattr(constants, "DRIVER", "textual.drivers.linux_driver:LinuxDriver")
    assert app.get_driver_class().__name__ == "LinuxDriver"


class Screen:
    """Everything the child writes to the pty, read all along: a child whose terminal fills up blocks in write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = b""
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            with self._changed:
                self.data += chunk
                self._changed.notify_all()

    def wait_for(self, wanted: bytes, after: int, limit_s: float = 20.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: wanted in self.data[after:], limit_s)

    def settle(self, quiet_s: float = 0.3, limit_s: float = 20.0) -> int:
        """Wait until nothing was written for `quiet_s` (keys sent closer together than the parser's ESC wait
        would read as one sequence: ESC then q is alt+q); returns how much was written by then."""
        deadline = time.monotonic() + limit_s
        with self._changed:
            while time.monotonic() < deadline:
                size = len(self.data)
                self._changed.wait(quiet_s)
                if len(self.data) == size:
                    return size
        raise AssertionError("the screen never went quiet")


def test_enginedeck_on_a_real_terminal_takes_keys_and_quits(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {**os.environ, "TERM": "xterm-256color", "ENGINEDECK_CONFIG": str(config),
           "ENGINEDECK_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("TEXTUAL_DRIVER", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "console", "--no-discover"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    screen = Screen(master)
    try:
        assert screen.wait_for(b"enginedeck", 0)
        mark = screen.settle()
        os.write(master, b"?")
        assert screen.wait_for(b"Help", mark)  # the help screen opened
        mark = screen.settle()
        os.write(master, b"\x1b")  # a lone ESC closes it: the parser's wait ran out without a tick
        # Closing the help repaints the dashboard under it; an ESC that was not read as a key changes nothing.
        assert screen.settle() - mark > 2000
        assert b"Engines" in screen.data[mark:]
        os.write(master, b"q")
        proc.wait(20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
