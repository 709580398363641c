"""The engine's port to ComfyUI: `ComfyGateway` (HTTP, one `ComfyClient` per backend on one
shared connection pool) and `comfy_socket` (one `ComfySocket` per backend and client id).

The gateway turns the client's errors into the domain's three kinds: BackendRejected (400,
or an image the backend no longer has: retrying cannot help), BackendUnreachable (the
request surely never arrived) and BackendUncertain (it may have arrived: a timeout after
sending, a 5xx, an answer off the protocol).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Protocol

from stargraph.comfy import messages as m
from stargraph.comfy.client import (
    ComfyClient,
    ComfyError,
    ComfyNotFound,
    ComfyUnavailable,
    ComfyValidationError,
    HistoryEntry,
)
from stargraph.comfy.connection import ComfySocket
from stargraph.domain.backends import (
    BackendRejected,
    BackendUncertain,
    BackendUnreachable,
    EngineQueue,
    HistoryRecord,
    OutputImage,
)
from stargraph.domain.capabilities import Capabilities
from stargraph.domain.progress import error_message
from stargraph.domain.types import BackendId, JobId
from stargraph.http_client import HttpClient

SILENCE_TIMEOUT_S = 120.0  # no frame this long while a job is inside: reopen the socket


class EngineSocket(Protocol):
    """What the listener needs from a backend's socket (`ComfySocket` in production)."""

    def __aiter__(self) -> AsyncIterator[m.SocketEvent]: ...

    def set_active(self, active: bool) -> None: ...

    async def aclose(self) -> None: ...


def comfy_socket(backend: BackendId, client_id: str) -> EngineSocket:
    """The backend's socket for this listener's client id (reconnects by itself). The
    listener has no use for `progress_state` (several per node, the largest frames of a run):
    they are dropped unparsed, so the frame that ends a prompt is reached sooner."""
    return ComfySocket(
        backend, client_id, silence_timeout=SILENCE_TIMEOUT_S, skip=frozenset({"progress_state"})
    )


class ComfyGateway:
    """`domain.backends.EngineGateway` over `ComfyClient`s."""

    def __init__(self, backends: Iterable[BackendId]) -> None:
        self._http = HttpClient()
        self._clients = {b: ComfyClient(b, self._http) for b in backends}

    async def aclose(self) -> None:
        await self._http.aclose()

    def client(self, backend: BackendId) -> ComfyClient:
        client = self._clients.get(backend)
        if client is None:  # a backend named on a job row but not configured here
            client = self._clients[backend] = ComfyClient(backend, self._http)
        return client

    async def post(
        self, backend: BackendId, job_id: JobId, graph: dict[str, Any], client_id: str
    ) -> None:
        with _translated():
            await self.client(backend).post_prompt(graph, job_id, client_id)

    async def queue(self, backend: BackendId) -> EngineQueue:
        with _translated():
            snapshot = await self.client(backend).queue()
        return EngineQueue(
            running=frozenset(JobId(p) for p in snapshot.running),
            pending=frozenset(JobId(p) for p in snapshot.pending),
        )

    async def history(self, backend: BackendId, job_id: JobId) -> HistoryRecord | None:
        with _translated():
            entry = await self.client(backend).history(job_id)
        return None if entry is None else record_of(entry)

    async def fetch(self, backend: BackendId, image: OutputImage) -> bytes:
        with _translated():
            ref = m.ImageRef(image.filename, image.subfolder, image.type)
            return await self.client(backend).view(ref)

    async def forget(self, backend: BackendId, job_id: JobId) -> None:
        with _translated():
            await self.client(backend).delete_history(job_id)

    async def interrupt(self, backend: BackendId, job_id: JobId) -> None:
        with _translated():
            await self.client(backend).interrupt(job_id)

    async def delete_pending(self, backend: BackendId, job_id: JobId) -> None:
        with _translated():
            await self.client(backend).delete_from_queue([job_id])

    async def capabilities(self, backend: BackendId) -> Capabilities:
        with _translated():
            return await self.client(backend).object_info()


def record_of(entry: HistoryEntry) -> HistoryRecord:
    """The domain's view of a history entry."""
    error = entry.error
    return HistoryRecord(
        succeeded=entry.succeeded,
        images={
            node: tuple(OutputImage(i.filename, i.subfolder, i.type) for i in images)
            for node, images in entry.images.items()
        },
        error=error_message(error) if error is not None else None,
        interrupted=entry.interrupted is not None,
    )


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise the domain's backend errors for the client's."""
    try:
        yield
    except (ComfyValidationError, ComfyNotFound) as exc:
        raise BackendRejected(exc.message) from exc
    except ComfyUnavailable as exc:
        if not exc.maybe_processed:
            raise BackendUnreachable(exc.message) from exc
        raise BackendUncertain(exc.message) from exc
    except ComfyError as exc:
        raise BackendUncertain(exc.message) from exc
