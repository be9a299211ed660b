"""The probe's loop lag is sampled only while measured requests are in flight: a warm-up that holds the loop is
not the lag measured stamps carry; a measured request that holds it is."""

import asyncio
import itertools
import time

from console.engines.base import ChatEvent, EventKind, TokenSource, Usage
from console.probe.figures import LevelTrace
from console.probe.overhead import OverheadMeter
from console.probe.params import ProbeParams
from console.probe.streams import LevelStreams
from tests.fakes.chat_only import ChatOnlyEngine

BLOCK_S = 0.4  # the loop is held this long inside one warm-up, like a burst of new connections would


class TimedEngine(ChatOnlyEngine):
    """Answers each request with one token after a short pause and notes when it started and ended, by tag."""

    kind = "timed"

    def __init__(self, block_tag: str) -> None:
        super().__init__("timed")
        self.block_tag = block_tag
        self.spans: dict[str, tuple[int, int]] = {}

    async def chat(self, request):
        tag = request.messages[0].content.split("]", 1)[0].lstrip("[")
        start = time.perf_counter_ns()
        if tag == self.block_tag:
            time.sleep(BLOCK_S)  # noqa: ASYNC251 -- holding the loop is the point
        else:
            await asyncio.sleep(0.005)
        now = time.perf_counter_ns()
        self.spans[tag] = (start, now)
        yield ChatEvent(EventKind.CONTENT, t_ns=now, text="x", tokens=1)
        yield ChatEvent(EventKind.USAGE, t_ns=now, usage=Usage(prompt_tokens=3, completion_tokens=1,
                                                               source=TokenSource.SERVER_USAGE))
        yield ChatEvent(EventKind.DONE, t_ns=now)


async def run_level(warmup: bool, block_tag: str):
    engine, meter, records, all_done = TimedEngine(block_tag), OverheadMeter(tick_s=0.01), [], asyncio.Event()
    params = ProbeParams(levels=(3,), requests=9, warmup=warmup)

    def on_record(rec):
        records.append(rec)
        if len(records) == params.requests_for(3):
            all_done.set()

    streams = LevelStreams(engine, "m", params, 3, next_ticket=itertools.count().__next__, on_record=on_record,
                           on_first_ticket=lambda: None, trace=LevelTrace(), meter=meter)
    async with meter:
        await asyncio.wait_for(streams.run(range(3), all_done), 30)
    return engine, meter, records


async def test_lag_while_only_warmups_run_is_left_out():
    engine, meter, records = await run_level(warmup=True, block_tag="c3-w1")
    assert len(records) == 9 and all(r.ok for r in records)
    # Stream 1's warm-up held the loop before any measured request was sent.
    assert engine.spans["c3-w1"][1] <= min(start for tag, (start, _) in engine.spans.items() if "-r" in tag)
    lag = meter.result().loop_lag_max_ms
    assert lag is not None and lag < BLOCK_S * 1000 / 2


async def test_lag_while_measuring_is_sampled():
    engine, meter, records = await run_level(warmup=False, block_tag="c3-r1")
    assert len(records) == 9 and not any("-w" in tag for tag in engine.spans)
    lag = meter.result().loop_lag_max_ms
    assert lag is not None and lag >= BLOCK_S * 1000 / 2
