"""What answers at a URL: a few cheap GETs tell the engine kinds apart (reference/engines-api.md §0).

Order of evidence, first match wins:
1. `GET /` says "Ollama is running" → ollama; a `Server: llama.cpp` header on any answer (even 401/503) → llamacpp.
2. `GET /info` with `router == "text-generation-router"` → tgi.
3. `GET /version` that is exactly `{"version": ...}` → vllm.
4. `GET /get_model_info` with `model_path` → sglang; a 401 there while `/health` answers 200 → sglang too
   (SGLang guards every path but `/health*`).
5. `GET /api/v1/models` entries with `loaded_instances`, or `/api/v0/models` entries with `state` → lmstudio.
6. `GET /v1/models`: `owned_by` names the kind (vllm, sglang, llamacpp, organization_owner = LM Studio,
   the model id itself = TGI); any other list → "openai".

Step 1 runs alone: a refused connection ends detection at once. Steps 2–6 are independent read-only GETs, so
they run concurrently and are judged in order afterwards. `/health` is asked only in the SGLang case, because
SGLang's health check generates a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from console.config import EngineConfig, Timeouts, WireLimits
from console.engines.http import build_client, error_for_status, error_for_transport
from console.errors import AuthError, BadResponseError, ConfigError, EngineError

# Ollama, vLLM, llama.cpp (also TGI in Docker docs), SGLang, LM Studio, TGI launcher.
DEFAULT_PORTS: tuple[int, ...] = (11434, 8000, 8080, 30000, 1234, 3000)
PROBE_TIMEOUT_S = 1.5
PORT_OPEN_TIMEOUT_S = 0.3  # loopback answers a SYN in microseconds; this only bounds a firewalled port
LOOPBACK = "127.0.0.1"

# owned_by values of /v1/models that name the server (TGI uses the model id, handled separately).
_OWNED_BY = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llamacpp", "organization_owner": "lmstudio"}


@dataclass(frozen=True)
class Detection:
    kind: str
    url: str
    version: str | None
    evidence: str  # what gave it away, in words


@dataclass(frozen=True)
class _Answer:
    """One probe's outcome: a status and parsed JSON (None when not JSON), or no answer at all."""

    status: int | None
    data: Any = None
    text: str = ""
    server: str = ""


async def _get(client: httpx.AsyncClient, path: str) -> _Answer:
    try:
        resp = await client.get(path)
    except httpx.HTTPError:
        return _Answer(None)
    text = resp.text[:2000]
    try:
        data = json.loads(resp.content) if resp.content else None
    except (ValueError, RecursionError):
        data = None
    return _Answer(resp.status_code, data, text, resp.headers.get("server", ""))


def _version_of(answer: _Answer) -> str | None:
    if answer.status == 200 and isinstance(answer.data, Mapping):
        v = answer.data.get("version")
        return v if isinstance(v, str) else None
    return None


def _probe_config(url: str, cfg: EngineConfig | None, timeout_s: float) -> EngineConfig:
    base = cfg if cfg is not None else EngineConfig(name=url, url=url)
    return replace(base, url=url.rstrip("/"), timeouts=Timeouts.within(timeout_s, connect_s=base.timeouts.connect_s))


async def detect(url: str, *, cfg: EngineConfig | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> Detection:
    """The kind of engine at `url`. `cfg` supplies the API key and TLS settings of a configured engine.

    Raises UnreachableError when nothing answers, AuthError when something answers every probe with 401/403,
    BadResponseError when something answers but looks like no engine enginedeck knows.
    """
    pcfg = _probe_config(url, cfg, timeout_s)
    name = cfg.name if cfg is not None else pcfg.url
    async with build_client(pcfg, max_connections=8) as client:
        try:
            root = await client.get("/")
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, engine=name, url=pcfg.url) from None
        if "llama.cpp" in root.headers.get("server", "").lower():
            return Detection("llamacpp", pcfg.url, None, f"Server: llama.cpp header on GET / ({root.status_code})")
        if root.status_code == 200 and root.text.strip() == "Ollama is running":
            version = _version_of(await _get(client, "/api/version"))
            return Detection("ollama", pcfg.url, version, 'GET / answered "Ollama is running"')
        paths = ("/info", "/version", "/get_model_info", "/api/v1/models", "/api/v0/models", "/v1/models")
        answers = dict(zip(paths, await asyncio.gather(*(_get(client, p) for p in paths)), strict=True))
        found = await _judge(client, pcfg.url, answers)
        if found is not None:
            return found
    raise _not_recognised(name, pcfg.url, root.status_code, answers)


async def _judge(client: httpx.AsyncClient, url: str, a: Mapping[str, _Answer]) -> Detection | None:
    info = a["/info"]
    if info.status == 200 and isinstance(info.data, Mapping) and info.data.get("router") == "text-generation-router":
        return Detection("tgi", url, _version_of(info), "GET /info router is text-generation-router")
    ver = a["/version"]
    if ver.status == 200 and isinstance(ver.data, Mapping) and set(ver.data) == {"version"}:
        return Detection("vllm", url, _version_of(ver), 'GET /version answered only {"version"}')
    gmi = a["/get_model_info"]
    if gmi.status == 200 and isinstance(gmi.data, Mapping) and "model_path" in gmi.data:
        return Detection("sglang", url, None, "GET /get_model_info answered model_path")
    if gmi.status == 401 and (await _get(client, "/health")).status == 200:
        return Detection("sglang", url, None, "GET /get_model_info wants a key while /health answers 200")
    for path, marker in (("/api/v1/models", "loaded_instances"), ("/api/v0/models", "state")):
        ans = a[path]
        entries = ans.data.get("models" if path == "/api/v1/models" else "data") \
            if ans.status == 200 and isinstance(ans.data, Mapping) else None
        if isinstance(entries, list) and (not entries or any(
                isinstance(e, Mapping) and marker in e for e in entries)):
            return Detection("lmstudio", url, None, f"GET {path} lists models with {marker}")
    return _judge_v1_models(url, a["/v1/models"])


def _judge_v1_models(url: str, ans: _Answer) -> Detection | None:
    if ans.status != 200 or not isinstance(ans.data, Mapping) or not isinstance(ans.data.get("data"), list | None):
        return None
    entries = [e for e in ans.data.get("data") or () if isinstance(e, Mapping)]
    for e in entries:
        owner = e.get("owned_by")
        if isinstance(owner, str) and owner in _OWNED_BY:
            return Detection(_OWNED_BY[owner], url, None, f"GET /v1/models owned_by is {owner}")
        if owner is not None and owner == e.get("id") and e.get("created") == 0:
            return Detection("tgi", url, None, "GET /v1/models owned_by is the model id, created 0")
    return Detection("openai", url, None, "GET /v1/models answered an OpenAI-style list")


def _not_recognised(name: str, url: str, root_status: int, answers: Mapping[str, _Answer]) -> EngineError:
    statuses = [a.status for a in answers.values()]
    if all(s in (401, 403) for s in statuses if s is not None) and any(s in (401, 403) for s in statuses):
        err = error_for_status(next(s for s in statuses if s in (401, 403)), b"", engine=name,
                               what="detect the engine kind")
        return AuthError(err.message, engine=name, status=err.status,
                         hint="add it to the config with its kind and api_key_env (or api_key_file)")
    seen = ", ".join(f"{p} {a.status if a.status is not None else 'no answer'}" for p, a in answers.items())
    return BadResponseError(
        f"nothing I know answers at {url} (GET / {root_status}; {seen})", engine=name,
        hint="if it is an engine, add it to the config with its kind (ollama, vllm, llamacpp, sglang, tgi, "
             "lmstudio, openai)",
    )


async def port_open(host: str, port: int, timeout_s: float = PORT_OPEN_TIMEOUT_S) -> bool:
    """Whether something listens: a TCP connect, closed at once. Refused costs one round trip on loopback."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def scan_loopback(
    ports: Sequence[int] = DEFAULT_PORTS, *, host: str = LOOPBACK, timeout_s: float = PROBE_TIMEOUT_S,
    skip_urls: frozenset[str] = frozenset(), limits: WireLimits | None = None,
) -> list[Detection]:
    """Engines listening on `host` at `ports`, in port order. Ports that are closed or not an engine are left out.

    `skip_urls` (normalised with `url_key`) are not probed: the caller already knows them. `limits` (the config's)
    bound what each probe reads.
    """
    urls = [f"http://{host}:{p}" for p in ports]
    urls = [u for u in urls if url_key(u) not in skip_urls]
    open_flags = await asyncio.gather(*(port_open(host, urlsplit(u).port or 80) for u in urls))

    async def one(url: str) -> Detection | None:
        cfg = EngineConfig(name=url, url=url, limits=limits or WireLimits())
        try:
            return await detect(url, cfg=cfg, timeout_s=timeout_s)
        except EngineError:
            return None

    found = await asyncio.gather(*(one(u) for u, is_open in zip(urls, open_flags, strict=True) if is_open))
    return [d for d in found if d is not None]


def url_key(url: str) -> str:
    """The form two URLs are compared in: scheme://host:port/path, lower case, localhost as 127.0.0.1."""
    parts = urlsplit(url.strip().rstrip("/"))
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    if host == "localhost":
        host = LOOPBACK
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def short_name(kind: str, url: str) -> str:
    """How an engine without a configured name is called: `kind@host:port` (e.g. ollama@127.0.0.1:11434)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{kind}@{host}:{port}{parts.path.rstrip('/')}"


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def require_url(ref: str) -> str:
    """A URL given on the command line, checked the way the config checks its own."""
    parts = urlsplit(ref)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{ref!r} is not an engine URL", hint="write it as http://HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{ref!r} has a port that is not a number") from None
    return ref.rstrip("/")

