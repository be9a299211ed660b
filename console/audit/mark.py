"""What a line's signature says, found by console/audit (signed.py for a proxy's JSONL, verify.py for enginedeck's
own trail) and carried by each log line (console/logs/line.py) to the views that show it."""

from __future__ import annotations

import enum


class Mark(enum.Enum):
    """Signature state of a line from a signed JSONL file (None on ordinary lines)."""

    VALID = "valid"
    INVALID = "invalid"
    UNSIGNED = "unsigned"
