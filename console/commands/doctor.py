"""`enginedeck doctor`: is this box in a sane state to serve, and is anything exposed that should not be?

Checks: NVML, engines reachable, engines listening beyond loopback without an API key, engine processes with
connections to non-loopback hosts (the "no egress" check), each configured gateway's exposure (listen address,
client keys or not), config and key file permissions, DB integrity.
Exit 1 when any check fails; warnings alone exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import stat
import sys
from dataclasses import dataclass
from typing import Any

from console.commands.output import Col, print_json, print_table


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok / warn / fail / info
    detail: str


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help="check GPU, engines, exposure, egress, permissions, DB")
    p.set_defaults(handler=run)


def _check_nvml() -> Check:
    from console.telemetry.gpu import GpuMonitor

    monitor = GpuMonitor()
    try:
        snap = monitor.sample()
    finally:
        monitor.close()
    if not snap.available:
        return Check("gpu", "info", snap.reason)
    names = ", ".join(f"{g.index}: {g.name}" for g in snap.gpus)
    return Check("gpu", "ok", f"NVML {snap.nvml_version or '?'}, driver {snap.driver or '?'}: {names}")


def _check_file_mode(label: str, path: Any, *, secret: bool) -> Check | None:
    if path is None or not path.exists():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check(label, "fail", f"{path} is readable by group or others ({mode:04o}): chmod 600 {path}")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Check(label, "warn", f"{path} is writable by group or others ({mode:04o}): chmod go-w {path}")
    return Check(label, "ok", f"{path} ({mode:04o})")


def _gateway_checks(config: Any) -> list[Check]:
    """Each configured gateway's exposure: where it listens, and whether clients need a key."""
    from console.config import is_loopback, split_listen

    checks = []
    for g in config.gateways:
        label = f"gateway {g.name}"
        where = split_listen(g.listen)
        keyed = g.keys_file is not None or g.keys_env is not None
        source = ", ".join(s for s in (g.keys_file and f"keys_file {g.keys_file}", g.keys_env and f"${g.keys_env}")
                           if s)
        if where is not None and is_loopback(where[0]):
            checks.append(Check(label, "ok", f"listens on {g.listen} (loopback only) for {g.upstream}"
                                + (f"; client keys from {source}" if keyed else "; no client keys")))
        elif keyed:
            checks.append(Check(label, "info", f"listens on {g.listen} (reachable from other hosts) for {g.upstream}; "
                                               f"client keys from {source}"))
        else:
            checks.append(Check(label, "fail", f"listens on {g.listen} (reachable from other hosts) without client "
                                               "keys: it refuses to start; set keys_file or keys_env"))
        for what, path in (("keys file", g.keys_file), ("log key file", g.key_file)):
            if (check := _check_file_mode(f"{label} {what}", path, secret=True)) is not None:
                checks.append(check)
    return checks


async def _checks(ctx: Any) -> list[Check]:
    from console.engines.poll import poll_all
    from console.telemetry.processes import engine_processes, ports_by_engine
    from console.truth.findings import Inputs, detect, exposed_without_key
    from console.truth.gather import collect
    from console.truth.gather import keyed_ports as keyed

    checks = [await asyncio.to_thread(_check_nvml)]
    config = ctx.config

    registry = ctx.registry()
    entries = await registry.refresh()
    if not entries:
        checks.append(Check("engines", "warn", "no engine configured or found on the default loopback ports"))
    statuses = await poll_all([e.engine for e in entries if e.engine is not None])
    by_name = {s.name: s for s in statuses}
    for entry in entries:
        status = by_name.get(entry.name)
        if status is None or status.info is None:
            reason = (status.error if status else entry.error) or "not reachable"
            checks.append(Check(f"engine {entry.name}", "fail", f"{entry.url}: {reason}"))
        else:
            version = status.info.version or "?"
            verdict = {"ok": "ok", "down": "fail"}.get(status.health.value, "warn")  # loading / sleeping: warn
            checks.append(Check(f"engine {entry.name}", verdict,
                                f"{entry.kind} {version} at {entry.url}: {status.health.value}"
                                + (f" ({status.info.reason})" if status.info.reason else "")))

    keyed_ports = keyed(config)
    ports = ports_by_engine({entry.name: entry.url for entry in entries})
    processes = await asyncio.to_thread(engine_processes, ports)
    for p in processes:
        label = f"process {p.pid} ({p.engine or p.kind or p.name})"
        exposed = [e for e in p.listening if not e.loopback]
        if exposed:
            # The rule is the finding's (console/truth/findings.py), so doctor, `findings` and alerts agree.
            unkeyed = exposed_without_key(Inputs(processes=(p,), keyed_ports=keyed_ports))
            where = ", ".join(str(e) for e in exposed)
            if unkeyed:
                checks.append(Check(label, "warn", f"listens on {unkeyed[0].evidence[0].value} (reachable from "
                                                   "other hosts) and no API key is configured for it: bind to "
                                                   "127.0.0.1 or set --api-key"))
            else:
                checks.append(Check(label, "info", f"listens on {where} with an API key configured"))
        if p.egress:
            remotes = ", ".join(str(e) for e in p.egress[:5])
            checks.append(Check(label, "warn", f"has connections to non-loopback hosts: {remotes}"))
        elif not exposed:
            checks.append(Check(label, "ok", "loopback only, no outbound connections"))
    for e in config.engines:
        if not e.url.startswith(("http://127.", "http://localhost", "https://127.", "https://localhost",
                                 "http://[::1]")) and not (e.api_key_env or e.api_key_file):
            checks.append(Check(f"engine {e.name}", "info", f"{e.url} is not on loopback and has no API key set"))

    checks.extend(_gateway_checks(config))
    for check in (
        _check_file_mode("config file", config.path, secret=False),
        *(_check_file_mode(f"engine {e.name} key file", e.api_key_file, secret=True) for e in config.engines),
    ):
        if check:
            checks.append(check)

    from console.errors import StoreError

    store = None
    try:
        store = await ctx.store()
        problems = await store.integrity_check()
    except StoreError as exc:
        checks.append(Check("database", "fail", str(exc)))
    else:
        checks.append(Check("database", "ok" if not problems else "fail",
                            f"{config.db_path}: integrity ok" if not problems else "; ".join(problems)))
    # What the engines do not say (console/truth); exposure is listed per process above.
    for f in detect(await collect(statuses, config, store=store, processes=processes)):
        if f.kind != "exposed_without_key":
            evidence = "; ".join(f"{e.label} {e.value} ({e.source})" for e in f.evidence)
            checks.append(Check(f"finding {f.kind}", f.severity, f"{f.title} [{evidence}]: {f.action}"))
    return checks


async def run(args: argparse.Namespace, ctx: Any) -> int:
    checks = await _checks(ctx)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print_json({"ok": not failed, "checks": checks})
    else:
        marks = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "info"}
        columns = [Col("check", "end", keep=9, min=16), Col("status", keep=10), Col("detail", "wrap", keep=8, min=30)]
        print_table(columns, [(c.name, marks[c.status], c.detail) for c in checks])
        if failed:
            print("doctor: some checks failed", file=sys.stderr)
    return 1 if failed else 0
