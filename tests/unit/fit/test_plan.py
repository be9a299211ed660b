"""The verdict and the setting a llama-server command line implies; the answer as one line."""

import pytest

from console.fit.plan import FITS, SPILLS, UNKNOWN, WONT_FIT, Answer, judge, llama_setting
from console.fit.predict import Prediction
from console.present.fit import fit_line

GIB = 2**30


def prediction(kind: str = "llamacpp", memory: str = "gpu", total_gib: int = 10) -> Prediction:
    return Prediction(kind, memory, weights=(total_gib - 1) * GIB, kv=GIB, output=0, overhead=0,
                      overhead_source="fitted from 4 loads", cells=8192, slots=2)


@pytest.mark.parametrize(("kind", "memory", "free", "host", "verdict"), [
    ("llamacpp", "gpu", 12 * GIB, 64 * GIB, FITS),
    ("llamacpp", "gpu", 6 * GIB, 64 * GIB, SPILLS),  # 4 GiB over: kept in host memory, it runs slowly
    ("ollama", "gpu", 6 * GIB, 2 * GIB, WONT_FIT),  # and the host cannot take the excess either
    ("vllm", "gpu", 6 * GIB, 64 * GIB, WONT_FIT),  # vLLM does not spill: it cannot start
    ("llamacpp", "host", 6 * GIB, 6 * GIB, WONT_FIT),  # a CPU engine would swap
    ("llamacpp", "gpu", None, 64 * GIB, UNKNOWN),
])
def test_judge(kind, memory, free, host, verdict):
    assert judge(prediction(kind, memory), free=free, host_available=host) == verdict


@pytest.mark.parametrize(("args", "context", "slots", "cache"), [
    (["llama-server", "--ctx-size", "2048", "--model", "/m/a.gguf"], 512, 4, "f16"),  # llama-server's 4 slots
    (["llama-server", "-c", "8192", "-np", "2", "-ctk", "q8_0", "-ctv", "q4_0"], 4096, 2, "q8_0"),
    (["llama-server", "-np", "3"], 2731, 3, "f16"),  # no -c: the model's training context (8192) over 3
])
def test_llama_setting(args, context, slots, cache):
    s = llama_setting(args, 8192)
    assert (s.context, s.slots, s.cache_k) == (context, slots, cache)


def test_fit_line_says_the_verdict_terms_and_the_overheads_source():
    a = Answer("e", "llamacpp", "m", SPILLS, prediction(), free_bytes=6 * GIB, host_available=64 * GIB)
    line = fit_line(a)
    assert line.startswith("needs ≈10.0 GB on the GPU, only 6.0 GB free: will spill ≈4.0 GB to the CPU")
    assert "[fitted from 4 loads]; 2 slots × 4096 tokens" in line and "\n" not in line
    assert fit_line(Answer("e", "vllm", "m", UNKNOWN)) == "cannot predict the memory it needs"
