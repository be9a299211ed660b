"""An engine's command line, read for what it asked for: llama-server's GPU layers, context and model file.

The command line is the process's own (console/telemetry/processes.py, first 300 characters): a flag cut off
by that bound is not found, and then no finding is made from it.
"""

from __future__ import annotations

from dataclasses import dataclass

GPU_LAYER_FLAGS = ("-ngl", "--gpu-layers", "--n-gpu-layers")
CTX_FLAGS = ("-c", "--ctx-size")
MODEL_FLAGS = ("-m", "--model")


@dataclass(frozen=True)
class ProcessArgs:
    gpu_layers: int | None = None  # None: not given, or a word ("auto", "all") that means every layer
    gpu_layers_flag: str = ""
    ctx: int | None = None  # the total context asked for (llama-server splits it among -np slots)
    ctx_flag: str = ""
    model_path: str | None = None


def _value(words: list[str], flags: tuple[str, ...]) -> tuple[str, str] | None:
    """The value of the last of `flags` (`-c 4096` or `--ctx-size=4096`): the last one wins, as in llama.cpp."""
    found = None
    for i, word in enumerate(words):
        name, eq, inline = word.partition("=")
        if name in flags:
            if eq:
                found = (name, inline)
            elif i + 1 < len(words):
                found = (name, words[i + 1])
    return found


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_args(cmdline: str) -> ProcessArgs:
    words = cmdline.split()
    layers = _value(words, GPU_LAYER_FLAGS)
    ctx = _value(words, CTX_FLAGS)
    model = _value(words, MODEL_FLAGS)
    n_layers = _int(layers[1]) if layers else None
    return ProcessArgs(
        gpu_layers=n_layers if n_layers is not None and n_layers >= 0 else None,  # -1: all of them
        gpu_layers_flag=f"{layers[0]} {layers[1]}" if layers else "",
        ctx=(_int(ctx[1]) or None) if ctx else None,  # -c 0: the model's own context
        ctx_flag=f"{ctx[0]} {ctx[1]}" if ctx else "",
        model_path=model[1] if model else None,
    )
