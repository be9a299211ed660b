"""`enginedeck findings`: what the engines and GPUs do not say, each shown by two numbers that disagree.

Polls every engine once, samples NVML and the engine processes, reads the store (loads done, contexts asked,
probe figures) and runs the detectors of console/truth/findings.py. Exit 1 when a finding is a failure (ECC or
XID errors); warnings alone exit 0, so cron and monitoring checks can tell them apart.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console.commands.output import Col, print_json, print_table
from console.logs.sanitize import one_line

if TYPE_CHECKING:
    from console.services import Context
    from console.truth.findings import Finding

COLUMNS = (Col("KIND", keep=8, min=12), Col("SEVERITY", keep=7), Col("FINDING", "wrap", keep=9, min=30),
           Col("EVIDENCE", "wrap", keep=5, min=20), Col("SINCE", keep=4))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("findings", parents=[common],
                       help="what engines do not say: partly on CPU, VRAM gaps, short context, reload loops, "
                            "GPU throttling/ECC/XID, exposure")
    p.set_defaults(handler=run)


async def gather_findings(ctx: Context) -> tuple[list[Finding], list[tuple[str, str]]]:
    """Poll, sample, read the store, detect: the same findings `doctor` lists; and what could not be checked."""
    from console.engines.poll import poll_all
    from console.errors import StoreError
    from console.truth.findings import detect, not_checked
    from console.truth.gather import collect

    entries = await ctx.registry().refresh()
    statuses = await poll_all([e.engine for e in entries if e.engine is not None])
    try:
        store = await ctx.store()
    except StoreError:
        store = None  # no history: the findings that need it are not made, the others are
    inputs = await collect(statuses, ctx.config, store=store)
    return detect(inputs), not_checked(inputs, history=store is not None)


def evidence_text(f: Finding) -> str:
    return "; ".join(f"{e.label}: {e.value} ({e.source})" for e in f.evidence)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    findings, unchecked = await gather_findings(ctx)
    failed = any(f.severity == "fail" for f in findings)
    if args.json:
        print_json({"findings": [f.as_json() for f in findings],
                    "not_checked": [{"kinds": kinds, "why": why} for kinds, why in unchecked]})
    else:
        if not findings:
            print("no findings: every figure enginedeck could check agrees")
        else:
            print_table(COLUMNS, [(f.kind, f.severity, f"{f.title}. {f.action}", evidence_text(f),
                                   datetime.fromtimestamp(f.since).strftime("%H:%M:%S")) for f in findings])
        for kinds, why in unchecked:
            print(f"not checked: {kinds}: {one_line(why, 200)}")
    if failed and not args.json:
        print("findings: some are failures", file=sys.stderr)
    return 1 if failed else 0
