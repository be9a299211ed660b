"""The one HTTP layer every httpx-based adapter uses: client construction and error mapping.

Each engine answers errors in its own shape (`{"error": {...}}`, `{"error": "..."}`, flat objects, plain text,
empty bodies); they all end up as one typed `EngineError` whose message says what to try.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from console.config import EngineConfig
from console.errors import (
    AuthError,
    BadResponseError,
    BusyError,
    EngineError,
    EngineTimeoutError,
    NotFoundError,
    UnreachableError,
)

ERROR_BODY_LIMIT = 300


def build_client(cfg: EngineConfig, *, max_connections: int = 100) -> httpx.AsyncClient:
    """An AsyncClient for one engine: base URL, auth header, TLS settings, timeouts, pool size."""
    headers = {"User-Agent": "enginedeck"}
    key = cfg.resolve_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    verify: bool | str = str(cfg.ca_file) if cfg.ca_file else cfg.verify_tls
    t = cfg.timeouts
    return httpx.AsyncClient(
        base_url=cfg.url,
        headers=headers,
        verify=verify,
        timeout=httpx.Timeout(connect=t.connect_s, read=t.read_s, write=t.read_s, pool=t.read_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,  # never route loopback engines through a proxy from the environment
    )


def error_message_from_body(body: bytes | str) -> str:
    """Pull the human part out of any engine's error body; fall back to the raw text, shortened."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
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


def error_for_status(status: int, body: bytes | str, *, engine: str, what: str = "") -> EngineError:
    detail = error_message_from_body(body)
    said = f": {detail}" if detail else ""
    where = f" to {what}" if what else ""
    if status in (401, 403):
        return AuthError(
            f"answered {status}{where}{said}", engine=engine, status=status,
            hint="set api_key_env or api_key_file for this engine in the config",
        )
    if status == 404:
        return NotFoundError(f"answered 404{where}{said}", engine=engine, status=status,
                             hint="check the model name with `enginedeck models`")
    if status in (429, 503):
        return BusyError(f"is busy or still loading ({status}){where}{said}", engine=engine, status=status,
                         hint="try again in a moment")
    if status == 408 or status == 504:
        return EngineTimeoutError(f"timed out ({status}){where}{said}", engine=engine, status=status)
    return BadResponseError(f"answered {status}{where}{said}", engine=engine, status=status)


def error_for_transport(exc: httpx.HTTPError, *, engine: str, url: str) -> EngineError:
    if isinstance(exc, httpx.TimeoutException):
        return EngineTimeoutError(f"no answer from {url} in time ({type(exc).__name__})", engine=engine,
                                  hint="raise --timeout or check the engine's load")
    if isinstance(exc, httpx.ConnectError):
        return UnreachableError(f"cannot connect to {url} ({exc})", engine=engine,
                                hint="is the engine running and listening on that address?")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return UnreachableError(f"connection to {url} broke ({exc})", engine=engine)
    return UnreachableError(f"request to {url} failed ({type(exc).__name__}: {exc})", engine=engine)


def parse_json(body: bytes, *, engine: str, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        snippet = body[:80].decode("utf-8", "replace")
        raise BadResponseError(f"sent something that is not JSON for {what}: {snippet!r}", engine=engine) from None


async def request(
    client: httpx.AsyncClient, method: str, path: str, *, engine: str, what: str = "",
    ok: tuple[int, ...] = (200,), **kwargs: Any,
) -> httpx.Response:
    """Send one request; transport failures and non-`ok` statuses become typed errors."""
    try:
        resp = await client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise error_for_transport(exc, engine=engine, url=f"{client.base_url}{path}") from None
    if resp.status_code not in ok:
        raise error_for_status(resp.status_code, resp.content, engine=engine, what=what or f"{method} {path}")
    return resp


async def request_json(
    client: httpx.AsyncClient, method: str, path: str, *, engine: str, what: str = "", **kwargs: Any,
) -> Any:
    resp = await request(client, method, path, engine=engine, what=what, **kwargs)
    return parse_json(resp.content, engine=engine, what=what or f"{method} {path}")
