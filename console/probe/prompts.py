"""The fixed, deterministic prompt set: same text for the same (level, index) on every run and every engine.

No tokenizer is used (none may be downloaded), so the prompt length is set in words at ~0.75 words per token,
the usual English ratio; the server's own prompt count is what the report shows. Every prompt starts with a
unique tag so that no request can reuse another's prompt cache, which would make TTFT depend on the order.
"""

from __future__ import annotations

WORDS_PER_TOKEN = 0.75

TOPICS = (
    "how lighthouses were kept running before electricity",
    "why suspension bridges can carry heavy loads",
    "the way rivers shape a valley over thousands of years",
    "how a bakery plans its night shift",
    "what happens inside a refrigerator",
    "how ships find their position at sea without satellites",
    "the life cycle of a city park tree",
    "how a small library decides which books to keep",
)

# Neutral context text; repeated to reach the asked prompt length.
CONTEXT_TEXT = (
    "The reader is curious and patient and wants concrete detail rather than summary. Describe each step in "
    "order, name the tools and materials involved, explain the reasons behind each choice, and mention common "
    "mistakes and how people learned to avoid them. Use plain sentences and avoid lists."
)
CONTEXT = CONTEXT_TEXT.split(" ")


def prompt_tag(level: int, index: int, *, warmup: bool = False, filler: bool = False, prefix: str = "c") -> str:
    """`c4-r7`: level 4's measured request 7 (prefix "o" and the rate's position for open-loop levels)."""
    kind = "w" if warmup else "f" if filler else "r"
    return f"{prefix}{level}-{kind}{index}"


def build_prompt(tag: str, index: int, prompt_tokens: int) -> str:
    head = f"[{tag}] Write a long, detailed essay about {TOPICS[index % len(TOPICS)]}."
    want_words = max(0, round(prompt_tokens * WORDS_PER_TOKEN) - len(head.split()))
    body = [CONTEXT[i % len(CONTEXT)] for i in range(want_words)]
    return " ".join([head, *body])
