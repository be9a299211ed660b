"""What enginedeck watches for the operator when nobody looks at a screen: one collection of everything it knows
(`collect.py`), the Prometheus exporter over it (`exposition.py`, `exporter.py`), alert rules (`rules.py`,
`alerts.py`) and the fleet read back from Prometheus (`fleet.py`). Headless: no UI import, usable from the CLI,
the TUI and a service (docs/exporter.md)."""
