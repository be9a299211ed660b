"""Alert rules judged over snapshots: which subjects (an engine, a GPU, an engine's model) breach each rule now,
and the events when that changes (`firing`, `resolved`), each with its values.

One `Alerts` keeps the state between looks: a breach starts `pending`, becomes `firing` once it has lasted the
rule's `for`, and `resolved` when it ends (or its subject is gone). `judge_once` is the cron form: every breach
now is firing, `for` is not waited out. A rule with nothing to judge (no GPU telemetry for a GPU rule, a part
of the collection that was late) is `unknown`, which `--once` reports with its own exit code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from console.engines.base import Health
from console.logs.sanitize import one_line
from console.watch.collect import Snapshot
from console.watch.rules import UNITS, Rule, Rules

# Which part of a collection each metric needs: when that part is late, the rule is unknown for this look.
NEEDS = {"engine_down": "engines", "waiting": "engines", "vram_percent": "gpu", "gpu_temperature": "gpu",
         "ttft_p90": "traffic", "finding": "findings"}


@dataclass(frozen=True)
class Reading:
    """One subject's value for a rule now; `breach` when it is past the threshold."""

    subject: str  # "engine:NAME", "gpu:INDEX", "engine:NAME model:MODEL"
    value: float | None
    breach: bool
    detail: str = ""


def readings(rule: Rule, snap: Snapshot) -> list[Reading] | None:
    """The rule's readings in this snapshot; None when it has nothing to judge (unknown)."""
    if NEEDS[rule.metric] in snap.late:
        return None
    above = rule.above if rule.above is not None else 0.0
    if rule.metric in ("engine_down", "waiting"):
        out: list[Reading] = []
        for s in snap.engines:
            if rule.engine is not None and s.name != rule.engine:
                continue
            if rule.metric == "engine_down":
                down = s.health not in (Health.OK, Health.SLEEPING)
                reason = s.error or (s.info.reason if s.info else "") or s.health.value
                out.append(Reading(f"engine:{s.name}", 1.0 if down else 0.0, down,
                                   one_line(reason, 300) if down else ""))
            else:
                waiting = snap.pressure[s.name].waiting if s.name in snap.pressure else None
                if waiting is not None:
                    out.append(Reading(f"engine:{s.name}", waiting, waiting > above))
        return out or None
    if rule.metric in ("vram_percent", "gpu_temperature"):
        if snap.gpus is None or not snap.gpus.available:
            return None
        out = []
        for g in snap.gpus.gpus:
            if rule.gpu is not None and g.index != rule.gpu:
                continue
            if rule.metric == "vram_percent":
                value = (g.mem_used / g.mem_total * 100) if g.mem_used is not None and g.mem_total else None
            else:
                value = g.temp_c
            if value is not None:
                out.append(Reading(f"gpu:{g.index}", round(value, 2), value > above, g.name))
        return out or None
    if rule.metric == "ttft_p90":
        out = [Reading(f"engine:{t.engine} model:{t.model}", t.ttft_p90_s, t.ttft_p90_s > above)
               for t in snap.traffic if t.ttft_p90_s is not None
               and (rule.engine is None or t.engine == rule.engine) and (rule.model is None or t.model == rule.model)]
        return out or None
    # finding: the count per engine of the findings that match
    counts: dict[str, int] = {s.name: 0 for s in snap.engines if rule.engine is None or s.name == rule.engine}
    for f in snap.findings:
        if (rule.kind is None or f.kind == rule.kind) and (rule.engine is None or f.engine == rule.engine):
            counts[f.engine or ""] = counts.get(f.engine or "", 0) + 1
    return [Reading(f"engine:{name}" if name else "host", n, n > above) for name, n in counts.items()]


@dataclass(frozen=True)
class Event:
    event: str  # firing, resolved, unknown
    rule: str
    metric: str
    subject: str
    value: float | None
    threshold: float | None
    unit: str
    since: float | None  # when the breach began (firing, resolved)
    at: float
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return {"event": self.event, "rule": self.rule, "metric": self.metric, "subject": self.subject,
                "value": self.value, "threshold": self.threshold, "unit": self.unit, "since": self.since,
                "at": self.at, "detail": self.detail}


@dataclass
class _State:
    since: float
    firing: bool = False
    value: float | None = None


@dataclass
class Alerts:
    rules: Rules
    _state: dict[tuple[str, str], _State] = field(default_factory=dict)
    _unknown: set[str] = field(default_factory=set)

    def firing(self) -> list[tuple[str, str]]:
        """(rule, subject) of every alert firing now."""
        return [key for key, st in self._state.items() if st.firing]

    def judge(self, snap: Snapshot, now: float | None = None) -> list[Event]:
        """The events of this look: `firing` when a breach has lasted its rule's `for`, `resolved` when a firing
        one ended, `unknown` when a rule has nothing to judge (once per spell of unknowns)."""
        now = time.time() if now is None else now
        events: list[Event] = []
        for rule in self.rules.rules:
            got = readings(rule, snap)
            if got is None:
                if rule.name not in self._unknown:
                    self._unknown.add(rule.name)
                    events.append(_event("unknown", rule, "", None, None, now, _why_unknown(rule, snap)))
                continue
            self._unknown.discard(rule.name)
            seen = set()
            for r in got:
                key = (rule.name, r.subject)
                seen.add(key)
                st = self._state.get(key)
                if not r.breach:
                    if st is not None:
                        del self._state[key]
                        if st.firing:
                            events.append(_event("resolved", rule, r.subject, r.value, st.since, now, r.detail))
                    continue
                if st is None:
                    st = self._state[key] = _State(since=now)
                st.value = r.value
                if not st.firing and now - st.since >= rule.for_s:
                    st.firing = True
                    events.append(_event("firing", rule, r.subject, r.value, st.since, now, r.detail))
            for key in [k for k in self._state if k[0] == rule.name and k not in seen]:
                st = self._state.pop(key)
                if st.firing:  # its subject is gone (an engine removed, a GPU no longer listed)
                    events.append(_event("resolved", rule, key[1], None, st.since, now, "no longer reported"))
        return events


def judge_once(rules: Rules, snap: Snapshot) -> list[Event]:
    """Every breach now as `firing` (no `for`), and every rule with nothing to judge as `unknown`."""
    now = time.time()
    events: list[Event] = []
    for rule in rules.rules:
        got = readings(rule, snap)
        if got is None:
            events.append(_event("unknown", rule, "", None, None, now, _why_unknown(rule, snap)))
            continue
        events.extend(_event("firing", rule, r.subject, r.value, now, now, r.detail) for r in got if r.breach)
    return events


def _why_unknown(rule: Rule, snap: Snapshot) -> str:
    part = NEEDS[rule.metric]
    if part in snap.late:
        return f"the {part} part of the collection missed its deadline"
    if part == "gpu":
        reason = snap.gpus.reason if snap.gpus is not None else "not sampled"
        return f"no GPU reading: {one_line(reason, 200) or 'no GPU matched'}"
    if part == "traffic":
        return "no TTFT figure: no gateway reports traffic for it"
    return "nothing to judge: no engine matched" if rule.engine else "nothing to judge"


def _event(kind: str, rule: Rule, subject: str, value: float | None, since: float | None, now: float,
           detail: str) -> Event:
    threshold = None if rule.metric == "engine_down" else (rule.above if rule.above is not None else 0.0)
    return Event(kind, rule.name, rule.metric, subject, value, threshold, UNITS.get(rule.metric, ""), since, now,
                 detail)
