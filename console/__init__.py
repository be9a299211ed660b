"""enginedeck: a terminal operations console for the LLM engines on a box."""

__version__ = "0.1.0"
