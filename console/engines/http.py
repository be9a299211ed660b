"""The one HTTP layer every httpx-based adapter uses: client construction and error mapping.

Each engine answers errors in its own shape (`{"error": {...}}`, `{"error": "..."}`, flat objects, plain text,
empty bodies); they all end up as one typed `EngineError` whose message says what to try.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

import httpx

from console.config import EngineConfig
from console.engines.transport import BoundedTransport, KeepAliveTransport
from console.engines.wire import parse_json
from console.errors import (
    AuthError,
    BadResponseError,
    BusyError,
    ConfigError,
    EngineError,
    EngineTimeoutError,
    NotFoundError,
    UnreachableError,
)

ERROR_BODY_LIMIT = 300


def build_client(cfg: EngineConfig, *, max_connections: int = 100) -> httpx.AsyncClient:
    """An AsyncClient for one engine: base URL, auth header, TLS settings, pool size, and every answer held to the
    engine's deadlines and limits (console/engines/transport.py's BoundedTransport). A plain-http engine is spoken
    to with keep-alive on a raw asyncio protocol (KeepAliveTransport), an https one through httpx's own."""
    headers = {"User-Agent": "enginedeck", "Accept-Encoding": "identity"}
    key = cfg.resolve_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    t = cfg.timeouts
    inner: httpx.AsyncBaseTransport
    if cfg.url.lower().startswith("https://"):
        inner = httpx.AsyncHTTPTransport(
            verify=tls_verify(cfg), trust_env=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))
    else:
        inner = KeepAliveTransport(max_connections=max_connections)
    return httpx.AsyncClient(
        base_url=cfg.url,
        headers=headers,
        timeout=httpx.Timeout(connect=t.connect_s, read=t.request_s, write=t.request_s, pool=t.request_s),
        transport=BoundedTransport(inner, engine=cfg.name, timeouts=t, limits=cfg.limits),
        trust_env=False,  # never route loopback engines through a proxy from the environment
    )


def tls_verify(cfg: EngineConfig) -> ssl.SSLContext | bool:
    """What an engine's TLS is checked against: its ca_file (which wins over verify_tls), else nothing when
    verify_tls is false, else httpx's default CA bundle.

    A plain-http engine gets one shared context with no CAs loaded: httpx otherwise reads the whole CA bundle
    for every client (~22 ms and memory each, several clients at start) for TLS the engine never speaks. That
    context still demands a verified certificate, so TLS nobody configured fails rather than goes unchecked.
    """
    if not cfg.url.lower().startswith("https://"):
        return _no_ca_context()
    if not cfg.ca_file:
        return cfg.verify_tls
    try:
        return ssl.create_default_context(cafile=str(cfg.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"engine {cfg.name!r}: ca_file {cfg.ca_file} is not a usable CA bundle ({exc})",
                          hint="point ca_file at a PEM file") from None


@functools.cache
def _no_ca_context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names, trusts no CA


def error_message_from_body(body: bytes | str) -> str:
    """Pull the human part out of any engine's error body; fall back to the raw text, shortened."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        return text[:ERROR_BODY_LIMIT]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("error") or json.dumps(err)[:ERROR_BODY_LIMIT]
            return str(msg)[:ERROR_BODY_LIMIT]
        if isinstance(err, str):
            return err[:ERROR_BODY_LIMIT]
        if "message" in data:
            return str(data["message"])[:ERROR_BODY_LIMIT]
    return text[:ERROR_BODY_LIMIT]


def error_for_status(status: int, body: bytes | str, *, engine: str, what: str = "",
                     model: str | None = None) -> EngineError:
    """`model` names the model the request was about, if any: a 404 then most likely means that model."""
    detail = error_message_from_body(body)
    said = f": {detail}" if detail else ""
    where = f" to {what}" if what else ""
    if status in (401, 403):
        return AuthError(
            f"answered {status}{where}{said}", engine=engine, status=status,
            hint="set api_key_env or api_key_file for this engine in the config",
        )
    if status == 404:
        hint = (f"check the model name {model!r} with `enginedeck models {engine}`" if model else
                "the engine does not serve this path: check that it is the kind enginedeck took it for "
                "(`enginedeck engines`)")
        return NotFoundError(f"answered 404{where}{said}", engine=engine, status=status, hint=hint)
    if status in (429, 503):
        return BusyError(f"is busy or still loading ({status}){where}{said}", engine=engine, status=status,
                         hint="try again in a moment")
    if status == 408 or status == 504:
        return EngineTimeoutError(f"timed out ({status}){where}{said}", engine=engine, status=status)
    return BadResponseError(f"answered {status}{where}{said}", engine=engine, status=status)


def no_answer_in_time(url: str, which: str, *, engine: str) -> EngineTimeoutError:
    """`which` names the timeout that ran out (ConnectTimeout, ReadTimeout, ...)."""
    return EngineTimeoutError(f"no answer from {url} in time ({which})", engine=engine,
                              hint="raise --timeout or check the engine's load")


def cannot_connect(url: str, detail: object, *, engine: str) -> UnreachableError:
    return UnreachableError(f"cannot connect to {url} ({detail})", engine=engine,
                            hint="is the engine running and listening on that address?")


def connection_broke(url: str, detail: object, *, engine: str) -> UnreachableError:
    return UnreachableError(f"connection to {url} broke ({detail})", engine=engine)


def error_for_transport(exc: httpx.HTTPError, *, engine: str, url: str) -> EngineError:
    if isinstance(exc, httpx.TimeoutException):
        return no_answer_in_time(url, type(exc).__name__, engine=engine)
    if isinstance(exc, httpx.ConnectError):
        return cannot_connect(url, exc, engine=engine)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return connection_broke(url, exc, engine=engine)
    return UnreachableError(f"request to {url} failed ({type(exc).__name__}: {exc})", engine=engine)


async def request(
    client: httpx.AsyncClient, method: str, path: str, *, engine: str, what: str = "",
    ok: tuple[int, ...] = (200,), model: str | None = None, **kwargs: Any,
) -> httpx.Response:
    """Send one request; transport failures and non-`ok` statuses become typed errors (`model`: the model the
    request is about, for the hint of a 404)."""
    try:
        resp = await client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise error_for_transport(exc, engine=engine, url=f"{client.base_url}{path}") from None
    if resp.status_code not in ok:
        raise error_for_status(resp.status_code, resp.content, engine=engine, what=what or f"{method} {path}",
                               model=model)
    return resp


async def request_json(
    client: httpx.AsyncClient, method: str, path: str, *, engine: str, what: str = "", **kwargs: Any,
) -> Any:
    resp = await request(client, method, path, engine=engine, what=what, **kwargs)
    return parse_json(resp.content, engine=engine, what=what or f"{method} {path}")
