"""Does the chat view keep up with a fast engine? Feed N tokens/s into a ChatPane headless and measure.

    .venv/bin/python bench/stream_render.py [--rate 2000] [--tokens 8000] [--size 120x40]

A synthetic engine yields the tokens of a typical Markdown answer (paragraphs, a list, a code block) at
`--rate` tokens/s, in 10 ms bursts, into a real `ChatPane` (Conversation without a store) inside
`App.run_test`. It reports:
- lag: how long after the engine's last token the pane had consumed and rendered everything
  (a view that falls behind shows a lag that grows with the reply's length);
- event-loop stalls: a 10 ms ticker's worst and p95 delay while streaming (what a keypress would wait);
- frames: screen updates Textual made while streaming;
- whether the final render holds the whole reply.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

from textual.app import App, ComposeResult

from console.conversation import Conversation
from console.engines.base import Capabilities, ChatEvent, ChatRequest, Engine, EngineInfo, EventKind, Health
from console.ui.widgets.chat_pane import ChatPane

BURST_S = 0.01
def reply_tokens() -> list[str]:
    """One section of a typical long answer, as tokens: three paragraphs, a list, a code block, a closing line.

    About 330 tokens; the stream repeats it. Block counts matter more than characters to the Markdown widget
    (each paragraph, list item and code block is a widget), so the shape is kept close to real replies.
    """
    sentence = ("the engine keeps the KV cache warm so a second request with the same prefix skips most of its "
                "prompt processing and the first token arrives sooner than")
    words = sentence.split(" ")
    paragraph = [w + " " for w in (words * 2)[:60]]
    paragraph[5] = "**cache** "
    paragraph[-1] = "later.\n\n"
    items = ["- ", "load ", "the ", "model\n", "- ", "warm ", "the ", "cache\n", "- ", "send ", "`prompt`\n",
             "- ", "measure\n\n"]
    code = ["```python\n", *[f"x{i} = engine.chat(prompt{i})\n" for i in range(10)], "```\n\n"]
    return [*paragraph * 3, *items, *code, "That ", "is ", "all.\n\n"]


PIECES = reply_tokens()


class Firehose(Engine):
    kind = "synthetic"

    def __init__(self, rate: int, tokens: int) -> None:
        super().__init__("firehose", "http://127.0.0.1:1")
        self.rate, self.tokens = rate, tokens
        self.last_token_at = 0.0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def info(self) -> EngineInfo:
        return EngineInfo(self.kind, self.base_url, "1", Health.OK)

    async def list_models(self) -> list:
        return []

    async def loaded_models(self) -> list:
        return []

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        per_burst = max(1, round(self.rate * BURST_S))
        start = time.perf_counter()
        for i in range(self.tokens):
            if i and i % per_burst == 0:
                # Pace against the clock, not sleep lengths, so a slow consumer cannot slow the producer's plan.
                due = start + (i / self.rate)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            yield ChatEvent(EventKind.CONTENT, time.perf_counter_ns(), text=PIECES[i % len(PIECES)])
            self.last_token_at = time.perf_counter()
        yield ChatEvent(EventKind.DONE, time.perf_counter_ns(), done_reason="stop")


class Host(App[None]):
    def __init__(self, pane: ChatPane) -> None:
        super().__init__()
        self.pane = pane
        self.frames = 0
        self.turn_ended = asyncio.Event()

    def on_chat_pane_turn_ended(self) -> None:
        self.turn_ended.set()

    def compose(self) -> ComposeResult:
        yield self.pane

    def _display(self, screen, renderable) -> None:
        self.frames += 1
        super()._display(screen, renderable)


async def run(rate: int, tokens: int, size: tuple[int, int]) -> None:
    engine = Firehose(rate, tokens)
    pane = ChatPane(Conversation(None, model="firehose"), engine, pane_id="bench")
    app = Host(pane)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        stalls: list[float] = []
        streaming = True

        async def ticker() -> None:
            while streaming:
                t0 = time.perf_counter()
                await asyncio.sleep(0.01)
                stalls.append((time.perf_counter() - t0 - 0.01) * 1000)

        tick = asyncio.create_task(ticker())
        frames0 = app.frames
        started = time.perf_counter()
        pane.send("go")
        await app.turn_ended.wait()
        finished = time.perf_counter()
        streaming = False
        await tick
        frames = app.frames - frames0
        reply = pane.views()[-1]
        expected = "".join(PIECES[i % len(PIECES)] for i in range(tokens))
        produced_s = engine.last_token_at - started
        print(f"{tokens} tokens at {rate} tok/s target, terminal {size[0]}x{size[1]}")
        print(f"  engine produced them in {produced_s:.2f} s ({tokens / produced_s:.0f} tok/s achieved)")
        print(f"  view done {1000 * (finished - engine.last_token_at):.0f} ms after the last token (lag)")
        print(f"  event-loop stall while streaming: p95 {_p95(stalls):.1f} ms, worst {max(stalls):.1f} ms, "
              f"median {statistics.median(stalls):.1f} ms")
        print(f"  {frames} screen updates ({frames / (finished - started):.0f}/s)")
        print(f"  final text complete: {reply.content == expected} ({len(reply.content):,} chars), "
              f"status {reply.status}")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--size", default="120x40")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    asyncio.run(run(args.rate, args.tokens, (width, height)))


if __name__ == "__main__":
    main()
