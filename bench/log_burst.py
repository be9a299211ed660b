"""A burst appended to a followed log: the worst UI-loop stall of the real TUI while it keeps up (target: appending
100 MB never stalls the loop more than 50 ms).

    .venv/bin/python bench/log_burst.py [--mb 100] [--rate-mb-s 0] [--no-skip] [--runs 1]

The app is enginedeck's own (headless, 80x24, Textual's pilot), with one configured engine whose log_file is the
followed file; the Logs screen is opened with `5`, as a user would. A separate process (the engine, as far as the
app can tell) appends `--mb` MiB of real engine lines in 1 MiB writes, as fast as it can (or at `--rate-mb-s`),
ending with one marked line. Meanwhile a ticker task on the app's event loop sleeps 5 ms at a time; a stall is
how late it wakes (what a key press waits for, at most). The run ends when the marked line is in the pane.

Printed: the worst stall and the 99th percentile; the same ticker's figures over `--quiet-s` seconds before
the burst (the machine's own noise: other processes on a shared box delay the loop too); how long after the
last write the pane showed the last line; lines parsed (a pane holds 20,000 lines: a backlog past that is
skipped to its end, with a notice; `--no-skip` parses and hands over every line); the CPU the process used; and
the full garbage collections during the burst (CPython's collector stops every thread, the loop's included,
while it walks every live object: ~25 ms for this app's ~50,000 on this box).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

TICK_S = 0.005
LAST = "the very last line of the burst"
WRITER = r"""
import sys, time
path, mb, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
templates = (
    'time=2026-11-22T06:50:{s:02d}.{ms:03d}Z level=INFO source=routes.go:1331 msg="request served" n={n}',
    "(APIServer pid=4107) INFO 11-22 06:50:{s:02d} [loggers.py:123] Engine 000: Avg prompt throughput: {n} tok/s",
    "0.05.{ms:03d}.436 I slot launch_slot_: id  0 | task {n} | processing task, is_child = 0",
    '{{"time": "2026-11-22T06:50:{s:02d}Z", "level": "warn", "msg": "slow request", "ms": {n}}}',
    'time=2026-11-22T06:50:{s:02d}.{ms:03d}Z level=ERROR source=sched.go:455 msg="error loading model" n={n}',
)
lines = [templates[i % len(templates)].format(s=i % 60, ms=i % 1000, n=i) for i in range(12_000)]
block = ("\n".join(lines) + "\n").encode()
block = block[: block.rfind(b"\n", 0, 1 << 20) + 1]
t0 = time.perf_counter()
with open(path, "ab", buffering=0) as f:
    for i in range(mb):
        f.write(block)
        if rate:
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.perf_counter()))
    f.write(b'time=2026-11-22T07:00:00Z level=INFO msg="LAST"\n'.replace(b"LAST", sys.argv[4].encode()))
print(block.count(b"\n") * mb + 1)
"""


async def burst(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from console.config import Config, EngineConfig, UIConfig
    from console.services import Context
    from console.ui.app import EngineDeckApp
    from console.ui.widgets.log_pane import LogPane

    log = tmp / "engine.log"
    log.write_text('time=2026-11-22T06:49:59Z level=INFO msg="before the burst"\n')
    config = Config(engines=(EngineConfig(name="bench", url="http://127.0.0.1:9", kind="ollama", log_file=log),),
                    ui=UIConfig(theme="dark", poll_interval_s=3600.0, telemetry_interval_s=3600.0),
                    discover=False, data_dir=tmp / "data")
    app = EngineDeckApp(Context(config))
    async with app.run_test(size=(80, 24), headless=True) as pilot:
        await pilot.press("5")
        while not (panes := [p for p in app.screen.query(LogPane) if p.label == str(log)]) or \
                not any("before the burst" in line.text for line in panes[0].view.lines):
            await pilot.pause(0.05)
        pane = panes[0]
        received = pane.received
        stalls: list[float] = []
        running = True

        async def ticker() -> None:
            while running:
                due = time.perf_counter() + TICK_S
                await asyncio.sleep(TICK_S)
                stalls.append(time.perf_counter() - due)

        gc_pauses: list[float] = []
        gc_started = 0.0

        def gc_watch(phase: str, info: dict[str, int]) -> None:
            nonlocal gc_started
            if phase == "start":
                gc_started = time.perf_counter()
            elif info["generation"] == 2:
                gc_pauses.append(time.perf_counter() - gc_started)

        tick_task = asyncio.create_task(ticker())
        await asyncio.sleep(args.quiet_s)  # the same ticker with nothing appended: this box's own noise
        quiet = sorted(stalls)
        stalls.clear()
        gc.callbacks.append(gc_watch)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(log), str(args.mb), str(args.rate_mb_s), LAST,
            stdout=asyncio.subprocess.PIPE)
        out, _ = await writer.communicate()
        written_at = time.perf_counter()
        lines_written = int(out)
        while not (pane.view.lines and LAST in pane.view.lines[-1].text):
            if time.perf_counter() - written_at > 600:
                raise SystemExit("the pane did not show the last line within 600 s")
            await asyncio.sleep(0.01)
        shown_at = time.perf_counter()
        running = False
        await tick_task
        gc.callbacks.remove(gc_watch)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        ordered = sorted(stalls)
        return {
            "quiet_worst_ms": quiet[-1] * 1000, "quiet_p99_ms": quiet[int(0.99 * (len(quiet) - 1))] * 1000,
            "worst_ms": ordered[-1] * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
            "median_ms": statistics.median(ordered) * 1000, "ticks": len(ordered),
            "write_s": written_at - t0, "caught_up_s": shown_at - written_at,
            "gc_full": len(gc_pauses), "gc_worst_ms": max(gc_pauses, default=0.0) * 1000,
            "lines_written": lines_written, "lines_received": pane.received - received,
            "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100, help="MiB appended (default 100)")
    ap.add_argument("--rate-mb-s", type=float, default=0.0, help="append at this rate (default: as fast as it can)")
    ap.add_argument("--no-skip", action="store_true", help="parse and show every line, however far behind")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--quiet-s", type=float, default=3.0, help="ticks before the burst, for the noise baseline")
    args = ap.parse_args()
    if args.no_skip:
        from console.logs import sources

        sources.SKIP_CHECK_BYTES = 1 << 62
    rate = f"{args.rate_mb_s:g} MiB/s" if args.rate_mb_s else "as fast as the writer can"
    print(f"append {args.mb} MiB to a followed log ({rate}), TUI at 80x24, 5 ms ticker on its loop"
          f"{', no skipping' if args.no_skip else ''}:")
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="enginedeck-burst-") as tmp:
            r = asyncio.run(burst(args, Path(tmp)))
        print(f"  worst stall {r['worst_ms']:7.1f} ms  p99 {r['p99_ms']:5.1f} ms  median {r['median_ms']:4.1f} ms"
              f"  ({r['ticks']:.0f} ticks) | written in {r['write_s']:.2f} s, last line shown "
              f"{r['caught_up_s']:.2f} s later | {r['lines_received']:,.0f} of {r['lines_written']:,.0f} lines "
              f"parsed | CPU {r['cpu_s']:.1f} s | {r['gc_full']:.0f} full GC passes, longest "
              f"{r['gc_worst_ms']:.1f} ms | before the burst: worst {r['quiet_worst_ms']:.1f} ms, "
              f"p99 {r['quiet_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
