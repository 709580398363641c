"""A background reader of a ComfySocket, for tests that await the events they expect."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from stargraph.comfy.connection import Backoff, ComfySocket
from stargraph.comfy.messages import SocketEvent
from stargraph.comfy.simulator import SimulatorHandle


def new_socket(handle: SimulatorHandle, **options: Any) -> ComfySocket:
    """A socket with a fresh client id and a quick back-off."""
    options.setdefault("backoff", Backoff(initial=0.01, maximum=0.05))
    return ComfySocket(handle.url, f"test-{uuid.uuid4().hex[:8]}", **options)


class Events:
    """Reads a socket in the background; tests await the events they expect."""

    def __init__(self, socket: ComfySocket) -> None:
        self.socket = socket
        self.seen: list[SocketEvent] = []
        self._queue: asyncio.Queue[SocketEvent] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for event in self.socket:
            self.seen.append(event)
            self._queue.put_nowait(event)

    async def next(self, kind: type, **match: Any) -> Any:
        async with asyncio.timeout(10):
            while True:
                event = await self._queue.get()
                if isinstance(event, kind) and all(
                    getattr(event, k) == v for k, v in match.items()
                ):
                    return event

    async def __aiter__(self) -> AsyncIterator[SocketEvent]:
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        await self.socket.aclose()
        async with asyncio.timeout(5):
            await self._task


@contextlib.asynccontextmanager
async def following(handle: SimulatorHandle, **options: Any) -> AsyncIterator[Events]:
    events = Events(new_socket(handle, **options))
    try:
        yield events
    finally:
        await events.close()
