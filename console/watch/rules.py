"""Alert rules: a TOML file held to the config's rules (unknown key, wrong type, number under its floor: the file,
the line, the key and "did you mean"), read by `enginedeck watch --rules FILE` (docs/exporter.md, "Alerts").

    interval = 10                 # seconds between two looks (watch without --once)

    [[rule]]
    name = "gpu-hot"              # unique; events carry it
    metric = "gpu_temperature"    # engine_down, vram_percent, gpu_temperature, waiting, ttft_p90, finding
    above = 85                    # fires when the value is above this (not for engine_down)
    for = 120                     # ... for this many seconds without a break (default 0: at once)
    gpu = 0                       # only this GPU (vram_percent, gpu_temperature)
    engine = "vllm-a"             # only this engine (engine_down, waiting, ttft_p90, finding)
    model = "qwen3"               # only this model (ttft_p90)
    kind = "partly_on_cpu"        # only this finding kind (finding)
    command = ["/usr/bin/logger", "-t", "enginedeck"]   # run on firing and resolved: argv, never a shell
    command_timeout = 10          # seconds before the command is killed
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from console.config import MIN_INTERVAL_S, read_settings_file, setting

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

METRICS = ("engine_down", "vram_percent", "gpu_temperature", "waiting", "ttft_p90", "finding")
# What each metric may be narrowed by; any other filter is an error that says which apply.
FILTERS = {"engine_down": ("engine",), "vram_percent": ("gpu",), "gpu_temperature": ("gpu",),
           "waiting": ("engine",), "ttft_p90": ("engine", "model"), "finding": ("engine", "kind")}
UNITS = {"vram_percent": "%", "gpu_temperature": "°C", "waiting": "requests", "ttft_p90": "s",
         "finding": "findings"}
MAX_RULES = 200
MAX_COMMAND_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str = setting(choices=METRICS)
    above: float | None = None
    for_s: float = setting(0.0, key="for", floor=0)
    engine: str | None = None
    gpu: int | None = setting(None, floor=0)
    model: str | None = None
    kind: str | None = None
    command: tuple[str, ...] = ()
    command_timeout_s: float = setting(10.0, key="command_timeout", floor=MIN_INTERVAL_S,
                                       ceiling=MAX_COMMAND_TIMEOUT_S)

    def filters(self) -> dict[str, object]:
        return {k: v for k in ("engine", "gpu", "model", "kind") if (v := getattr(self, k)) is not None}


@dataclass(frozen=True)
class Rules:
    path: Path | None = setting(None, in_file=False)
    interval_s: float = setting(10.0, key="interval", floor=MIN_INTERVAL_S)
    rules: tuple[Rule, ...] = setting((), key="rule")


def load_rules(path: Path) -> Rules:
    """The rules of `path`; a ConfigError naming the line for anything wrong (console/config.py's reader)."""
    rules, fail = read_settings_file(path, Rules, what="rules file")
    _check(rules, fail)
    return replace(rules, path=path)


def _check(rules: Rules, fail: Callable[..., NoReturn]) -> None:
    """What a type cannot say: names unique, a threshold where the metric needs one, filters that apply."""
    if not rules.rules:
        fail((), "the rules file has no rule", 'add a [[rule]] table with name, metric and above')
    if len(rules.rules) > MAX_RULES:
        fail(("rule", MAX_RULES), f"more than {MAX_RULES} rules")
    seen: set[str] = set()
    for i, rule in enumerate(rules.rules):
        where = ("rule", i)
        if not rule.name.strip():
            fail((*where, "name"), f"rule[{i}].name is empty")
        if rule.name in seen:
            fail((*where, "name"), f"two rules are named {rule.name!r}")
        seen.add(rule.name)
        if rule.metric == "engine_down":
            if rule.above is not None:
                fail((*where, "above"), f"rule {rule.name!r}: engine_down takes no `above` (an engine is up or not)",
                     "remove above")
        elif rule.above is None and rule.metric != "finding":
            unit = UNITS[rule.metric]
            fail(where, f"rule {rule.name!r}: metric {rule.metric} needs `above` (in {unit})",
                 f"add above = ... ({unit})")
        allowed = FILTERS[rule.metric]
        for key in rule.filters():
            if key not in allowed:
                fail((*where, key), f"rule {rule.name!r}: {rule.metric} cannot be narrowed by `{key}`",
                     f"{rule.metric} takes {' or '.join(allowed)}")
        if rule.command and not rule.command[0]:
            fail((*where, "command"), f"rule {rule.name!r}: command's first item (the program) is empty")
