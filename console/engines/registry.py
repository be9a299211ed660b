"""Every engine enginedeck knows in this run: configured ones, `--engine URL`s and what discovery found.

A fleet of many engines on many hosts is just more entries. Detection runs concurrently with short per-probe
timeouts, so one dead host costs its own timeout and never delays the others. Engines (and their open HTTP
clients) are kept across refreshes and reused; `aclose()` closes them all.

Names: a configured engine keeps its config name. An engine from `--engine URL` or discovery is named
`kind@host:port`, e.g. `ollama@127.0.0.1:11434`. `resolve()` accepts a name, a URL, or a bare kind
(`ollama`) when exactly one engine of that kind is known.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from console.config import ENGINE_KINDS, Config, EngineConfig
from console.errors import ConfigError, EngineDeckError

if TYPE_CHECKING:
    from console.engines.base import Engine
    from console.engines.detect import Detection

Source = Literal["config", "flag", "discovered"]

# kind → "module:Class", imported only when an engine of that kind is built (keeps `import registry` cheap).
ENGINE_CLASSES: dict[str, str] = {
    "ollama": "console.engines.ollama:OllamaEngine",
    "vllm": "console.engines.vllm:VLLMEngine",
    "llamacpp": "console.engines.llamacpp:LlamaCppEngine",
    "sglang": "console.engines.sglang:SGLangEngine",
    "tgi": "console.engines.tgi:TGIEngine",
    "lmstudio": "console.engines.lmstudio:LMStudioEngine",
    "openai": "console.engines.openai:OpenAICompatEngine",
}


def build_engine(cfg: EngineConfig, kind: str, *, max_connections: int = 100) -> Engine:
    """The adapter for `kind`, talking to `cfg.url` with `cfg`'s key, TLS settings and timeouts."""
    target = ENGINE_CLASSES.get(kind)
    if target is None:
        known = ", ".join(k for k in ENGINE_KINDS if k != "auto")
        raise ConfigError(f"engine {cfg.name!r}: unknown kind {kind!r}", hint=f"use one of {known}")
    module, _, cls = target.partition(":")
    engine_cls = getattr(importlib.import_module(module), cls)
    engine: Engine = engine_cls(replace(cfg, kind=kind), max_connections=max_connections)
    return engine


@dataclass(frozen=True)
class EngineEntry:
    """One known engine. `engine` is None when it could not be built (unreachable, unknown kind, bad key);
    `error` then says why, and the entry is still listed."""

    name: str
    url: str
    kind: str | None
    engine: Engine | None
    error: str | None
    source: Source
    version: str | None = None  # what detection read, when it read one
    evidence: str | None = None  # how the kind was detected; None when the config named it


class Registry:
    def __init__(self, config: Config, *, extra_urls: Sequence[str] = (), max_connections: int = 100,
                 scan_ports: Sequence[int] | None = None) -> None:
        self.config = config
        self.extra_urls = tuple(extra_urls)
        self.scan_ports = scan_ports  # None: detect.DEFAULT_PORTS
        self.max_connections = max_connections
        self._entries: list[EngineEntry] = []
        self._failures: dict[str, EngineDeckError] = {}  # entry name → the error, re-raised by resolve()
        self._engines: dict[tuple[str, str, str], Engine] = {}  # (name, url, kind) → engine, reused
        self._refreshed = False
        self._resolved_urls: list[str] = []  # URLs resolve() was asked for: kept by later refreshes
        self._lock = asyncio.Lock()

    @property
    def entries(self) -> list[EngineEntry]:
        return list(self._entries)

    async def refresh(self, on_entry: Callable[[EngineEntry], None] | None = None) -> list[EngineEntry]:
        """Build the list again: configured engines, `--engine` URLs, then (with discovery on) the loopback scan.

        `on_entry` is called with each entry as soon as it is built, before the others (a URL whose kind must be
        detected, a scan of the default ports) are done: its first poll need not wait for them.
        """
        from console.engines.detect import DEFAULT_PORTS, require_url, scan_loopback, url_key

        async with self._lock:
            wanted: list[tuple[EngineConfig, Source]] = [(cfg, "config") for cfg in self.config.engines]
            known = {url_key(cfg.url) for cfg in self.config.engines}
            for raw in (*self.extra_urls, *self._resolved_urls):
                url = require_url(raw)
                if url_key(url) not in known:
                    known.add(url_key(url))
                    wanted.append((self._flag_config(url), "flag"))
            ports = DEFAULT_PORTS if self.scan_ports is None else self.scan_ports
            scan = scan_loopback(ports, skip_urls=frozenset(known), limits=self.config.limits) \
                if self.config.discover else _nothing()
            def told(entry: EngineEntry) -> EngineEntry:
                if on_entry is not None:
                    on_entry(entry)
                return entry

            async def build(cfg: EngineConfig, src: Source) -> EngineEntry:
                return told(await self._entry(cfg, src))

            built = asyncio.gather(*(build(cfg, src) for cfg, src in wanted))
            entries, detections = await asyncio.gather(built, scan)
            entries.extend(told(self._discovered(d)) for d in detections)
            await self._install(entries)
            self._refreshed = True
            return self.entries

    async def resolve(self, ref: str) -> Engine:
        """The engine `ref` names: a configured name, a `kind@host:port` name, a URL, or a unique kind.

        A configured name or a URL is resolved without scanning the default ports.
        """
        from console.engines.detect import is_url, require_url, url_key

        entry = self._match(ref)
        if entry is None:
            cfg = self.config.engine(ref)
            if cfg is None and is_url(ref):  # a configured engine's URL brings its key and kind with it
                cfg = next((c for c in self.config.engines if url_key(c.url) == url_key(ref)), None)
            if cfg is not None:
                entry = await self._entry(cfg, "config")
            elif is_url(ref):
                url = require_url(ref)
                entry = await self._entry(self._flag_config(url), "flag")
                if entry.engine is not None:
                    self._resolved_urls.append(url)
            if entry is not None:
                self._add(entry)
            elif not self._refreshed:
                await self.refresh()
                entry = self._match(ref)
        if entry is None:
            names = ", ".join(e.name for e in self._entries) or "none"
            raise ConfigError(f"no engine called {ref!r} (known: {names})",
                              hint="give a configured name, a name from `enginedeck engines`, or a URL")
        if entry.engine is None:
            raise self._failures.get(entry.name) or ConfigError(f"engine {entry.name!r}: {entry.error}")
        return entry.engine

    async def aclose(self) -> None:
        engines = list(self._engines.values())
        self._engines.clear()
        self._entries = []
        await asyncio.gather(*(e.aclose() for e in engines), return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------------------

    def _flag_config(self, url: str) -> EngineConfig:
        return EngineConfig(name=url, url=url, kind="auto", timeouts=self.config.timeouts,
                           limits=self.config.limits)

    def _match(self, ref: str) -> EngineEntry | None:
        from console.engines.detect import is_url, url_key

        for e in self._entries:
            if e.name == ref:
                return e
        if is_url(ref):
            key = url_key(ref)
            return next((e for e in self._entries if url_key(e.url) == key), None)
        same_kind = [e for e in self._entries if e.kind == ref]
        if len(same_kind) > 1:
            names = ", ".join(e.name for e in same_kind)
            raise ConfigError(f"{len(same_kind)} engines are of kind {ref!r}: {names}", hint="name one of them")
        return same_kind[0] if same_kind else None

    def _engine(self, cfg: EngineConfig, kind: str) -> Engine:
        key = (cfg.name, cfg.url, kind)
        engine = self._engines.get(key)
        if engine is None:
            engine = build_engine(cfg, kind, max_connections=self.max_connections)
            self._engines[key] = engine
        return engine

    async def _entry(self, cfg: EngineConfig, source: Source) -> EngineEntry:
        """Detect the kind when the config says auto, then build. Failures become an entry with its error."""
        from console.engines.detect import detect, short_name

        detection: Detection | None = None
        try:
            kind = cfg.kind
            if kind == "auto":
                detection = await detect(cfg.url, cfg=cfg)
                kind = detection.kind
            if source == "flag":
                cfg = replace(cfg, name=short_name(kind, cfg.url))
            engine = self._engine(cfg, kind)
        except EngineDeckError as exc:
            self._failures[cfg.name] = exc
            return EngineEntry(cfg.name, cfg.url, None if cfg.kind == "auto" else cfg.kind, None, str(exc), source)
        self._failures.pop(cfg.name, None)
        return EngineEntry(cfg.name, cfg.url, kind, engine, None, source,
                           version=detection.version if detection else None,
                           evidence=detection.evidence if detection else None)

    def _discovered(self, d: Detection) -> EngineEntry:
        from console.engines.detect import short_name

        cfg = EngineConfig(name=short_name(d.kind, d.url), url=d.url, kind=d.kind,
                           timeouts=self.config.timeouts, limits=self.config.limits)
        try:
            engine = self._engine(cfg, d.kind)
        except EngineDeckError as exc:
            self._failures[cfg.name] = exc
            return EngineEntry(cfg.name, d.url, d.kind, None, str(exc), "discovered", d.version, d.evidence)
        return EngineEntry(cfg.name, d.url, d.kind, engine, None, "discovered", d.version, d.evidence)

    def _add(self, entry: EngineEntry) -> None:
        self._entries = [e for e in self._entries if e.name != entry.name] + [entry]

    async def _install(self, entries: list[EngineEntry]) -> None:
        """Take the new list and close the engines no entry uses any more."""
        self._entries = entries
        used = {id(e.engine) for e in entries if e.engine is not None}
        stale = [key for key, engine in self._engines.items() if id(engine) not in used]
        await asyncio.gather(*(self._engines.pop(key).aclose() for key in stale), return_exceptions=True)


async def _nothing() -> list[Detection]:
    return []
