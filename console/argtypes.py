"""argparse types for numbers, so a nonsense value is a usage error (exit 2) before anything runs. Outside
console/commands/ because opening the TUI parses the command line without importing any command module."""

from __future__ import annotations

import argparse
import math


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: a finite number above zero (0, -1, nan and inf are refused)."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def non_negative(text: str) -> float:
    """A finite number of at least zero (a temperature)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def fraction(text: str) -> float:
    """A finite number from 0 to 1 (top-p)."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number above zero (a context length, a slot count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text!r}")
    return value
