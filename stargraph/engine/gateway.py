"""The engine's port to ComfyUI: HTTP calls per backend, and the socket events of one backend.

`ComfyGateway` implements `domain.backends.EngineGateway` and turns transport failures into
the domain's three kinds: BackendRejected (400: the job is invalid), BackendUnreachable (the
request surely never arrived: connection refused) and BackendUncertain (it may have arrived:
timeouts after sending, 5xx).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from stargraph.comfy import messages as m
from stargraph.domain.backends import (
    BackendRejected,
    BackendUncertain,
    BackendUnreachable,
    EngineQueue,
    OutputImage,
)
from stargraph.domain.capabilities import Capabilities
from stargraph.domain.types import BackendId, JobId

log = logging.getLogger(__name__)

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ComfyGateway:
    """`EngineGateway` over plain HTTP, one pooled client for every backend."""

    def __init__(self, backends: Iterable[BackendId], timeout: httpx.Timeout = _TIMEOUT) -> None:
        self._backends = tuple(backends)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def post(
        self, backend: BackendId, job_id: JobId, graph: dict[str, Any], client_id: str
    ) -> None:
        body = {"prompt": graph, "prompt_id": job_id, "client_id": client_id}
        response = await self._request("POST", backend, "/prompt", json=body)
        if response.status_code == 400:
            raise BackendRejected(_rejection(response))

    async def queue(self, backend: BackendId) -> EngineQueue:
        data = (await self._request("GET", backend, "/queue")).json()
        return EngineQueue(
            running=_items(data.get("queue_running") or []),
            pending=_items(data.get("queue_pending") or []),
        )

    async def history(self, backend: BackendId, job_id: JobId) -> Mapping[str, Any] | None:
        data = (await self._request("GET", backend, f"/history/{job_id}")).json()
        entry = data.get(job_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    async def fetch(self, backend: BackendId, image: OutputImage) -> bytes:
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        response = await self._request("GET", backend, "/view", params=params)
        if response.status_code != 200:
            raise BackendUncertain(f"/view answered {response.status_code} for {image.filename}")
        return response.content

    async def forget(self, backend: BackendId, job_id: JobId) -> None:
        await self._request("POST", backend, "/history", json={"delete": [job_id]})

    async def interrupt(self, backend: BackendId, job_id: JobId) -> None:
        await self._request("POST", backend, "/interrupt", json={"prompt_id": job_id})

    async def delete_pending(self, backend: BackendId, job_id: JobId) -> None:
        await self._request("POST", backend, "/queue", json={"delete": [job_id]})

    async def capabilities(self, backend: BackendId) -> Capabilities:
        info = (await self._request("GET", backend, "/object_info")).json()
        return capabilities_of(info)

    async def _request(
        self, method: str, backend: BackendId, path: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, backend + path, **kwargs)
        except _NOT_SENT as exc:
            raise BackendUnreachable(f"{backend}: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise BackendUncertain(f"{backend}: {exc!r}") from exc
        if response.status_code >= 500:
            raise BackendUncertain(f"{backend}{path} answered {response.status_code}")
        return response


def _rejection(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the engine refused the job ({response.status_code})"
    error = body.get("error") or {}
    parts = [str(error.get("message") or "the engine refused the job")]
    for node_id, node in (body.get("node_errors") or {}).items():
        for item in node.get("errors") or []:
            parts.append(f"node {node_id} ({node.get('class_type')}): {item.get('details')}")
    return "; ".join(parts)[:2000]


def _items(items: list[Any]) -> dict[JobId, str | None]:
    found: dict[JobId, str | None] = {}
    for item in items:
        if isinstance(item, list) and len(item) >= 4:
            extra = item[3] if isinstance(item[3], dict) else {}
            found[JobId(str(item[1]))] = extra.get("client_id")
    return found


def _combo(spec: Any) -> tuple[str, ...]:
    """Options of a combo input in either form: `[[...], {...}]` or `["COMBO", {"options"}]`."""
    if not isinstance(spec, list) or not spec:
        return ()
    if isinstance(spec[0], list):
        return tuple(str(v) for v in spec[0])
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return tuple(str(v) for v in spec[1].get("options") or ())
    return ()


def capabilities_of(info: Mapping[str, Any]) -> Capabilities:
    """Checkpoints, samplers and schedulers from an `/object_info` answer."""

    def required(node: str, name: str) -> tuple[str, ...]:
        return _combo(((info.get(node) or {}).get("input") or {}).get("required", {}).get(name))

    return Capabilities(
        checkpoints=required("CheckpointLoaderSimple", "ckpt_name"),
        samplers=required("KSampler", "sampler_name"),
        schedulers=required("KSampler", "scheduler"),
    )


async def comfy_socket(backend: BackendId, client_id: str) -> AsyncIterator[m.SocketEvent]:
    """The backend's socket events, forever: `Connected` on each open, parsed messages,
    `Disconnected` when it drops; reconnects with back-off. Pings detect a silent peer."""
    url = backend.replace("http://", "ws://").replace("https://", "wss://")
    url = f"{url}/ws?clientId={client_id}"
    delay, first = 0.05, True
    while True:
        try:
            async with connect(
                url, ping_interval=10, ping_timeout=10, max_size=16 * 2**20, open_timeout=10
            ) as ws:
                yield m.Connected(client_id, reconnect=not first)
                first, delay = False, 0.05
                async for frame in ws:
                    message = _parse(frame)
                    if message is not None:
                        yield message
            reason = "socket closed"
        except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            reason = f"socket: {exc!r}"
        yield m.Disconnected(reason)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def _parse(frame: str | bytes) -> m.Message | None:
    try:
        return m.parse_binary(frame) if isinstance(frame, bytes) else m.parse_text(frame)
    except m.MalformedFrame as exc:
        log.warning("skipping a malformed ComfyUI frame: %s", exc)
        return None
