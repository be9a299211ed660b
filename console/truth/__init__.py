"""What engines do not say: findings, for the dashboard, `doctor`, `enginedeck findings`, alerts and the exporter.

API (no UI imports; everything here is usable headless):

    from console.truth.gather import collect, LoadWatch
    from console.truth.findings import detect, FindingsLog, Finding, KINDS

    inputs = await collect(statuses, config, store=store)   # statuses: console.engines.poll.EngineStatus list;
                                                            # gpu=, processes= to reuse what a caller sampled
    findings = detect(inputs)                               # list[Finding], sorted by KINDS order
    log = FindingsLog(); findings = log.stamp(findings)     # keep `since` across repeated checks
    [f.as_json() for f in findings]                         # kind, severity, title, engine, model, gpu,
                                                            # evidence (2 x label/value/source), since,
                                                            # since_source, action, notes

`Finding.key` is stable for one situation (kind:engine:model:gpu): use it for alert identity and as a bounded
label set (kind and severity are a fixed set; engine/model come from the config and the engines). Pressure
(running, waiting, KV-cache %, slots, prompt-cache hits) is in console/engines/pressure.py: `pressure_of(status)`.
"""
