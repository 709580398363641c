"""Sockets of the ComfyUI simulator: the sid table, routing, and one ordered publisher.

Like the real server (protocol §2.1–2.2): events go to one sid or to every socket in the table;
a sid that is not in the table drops its events; a second socket with the same clientId
replaces the first in the table, and when either closes the entry is removed — the recorded
duplicate-clientId trap. Events are queued and sent in order by one task, so a slow socket never
slows the engine. The socket faults of `Faults` (silence, drops) act here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from starlette.websockets import WebSocket

from stargraph.comfy.encoding import (
    encode_json,
    encode_preview_image,
    encode_preview_image_with_metadata,
    encode_text,
)
from stargraph.comfy.sim_config import Faults

PreviewVariant = Literal["metadata", "plain"]


class Client:
    """One open WebSocket and what its client announced."""

    def __init__(self, ws: WebSocket, sid: str) -> None:
        self.ws = ws
        self.sid = sid
        self.preview_metadata = False
        self.muted = False


@dataclass(frozen=True, slots=True)
class _Frame:
    event: str  # the JSON type, or "preview" / "text" for binary frames
    sid: str | None  # None: every socket in the table
    text: str | None = None
    binary: bytes | None = None
    preview: tuple[bytes, dict[str, Any], PreviewVariant] | None = None


class Hub:
    """Routes frames to sockets; `frames_sent` counts every frame written to a socket."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.frames_sent = 0
        self._table: dict[str, Client] = {}
        self._live: set[Client] = set()
        self._queue: asyncio.Queue[_Frame] = asyncio.Queue()
        self._sending = False
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()  # set whenever a socket opens or closes

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._publish(), name="comfy-sim-publisher")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.close_all(1001)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return self._queue.empty() and not self._sending

    @property
    def socket_count(self) -> int:
        return len(self._live)

    # sockets --------------------------------------------------------------------------------

    def register(self, client: Client) -> None:
        self._table[client.sid] = client
        self._live.add(client)
        self._signal()

    def unregister(self, client: Client) -> None:
        # The trap, kept on purpose: this removes the sid even if a newer socket holds it.
        self._table.pop(client.sid, None)
        self._live.discard(client)
        self._signal()

    def mute_current(self) -> None:
        """Every socket open now stops receiving (new sockets are unaffected)."""
        for client in self._live:
            client.muted = True

    async def close_all(self, code: int) -> None:
        """Close every open socket (a drop, or a restart)."""
        for client in list(self._live):
            with contextlib.suppress(Exception):
                await client.ws.close(code)

    def discard_pending(self) -> None:
        """Forget queued frames (a restart loses what was not sent yet)."""
        while not self._queue.empty():
            self._queue.get_nowait()

    def _signal(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    # emitting (synchronous, ordered) --------------------------------------------------------

    def emit_json(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        self._queue.put_nowait(_Frame(event, sid, text=encode_json(event, data)))

    def emit_preview(
        self, image: bytes, metadata: dict[str, Any], sid: str | None, variant: PreviewVariant
    ) -> None:
        self._queue.put_nowait(_Frame("preview", sid, preview=(image, metadata, variant)))

    def emit_text(self, node_id: str, text: str) -> None:
        """Binary text frames are broadcast: nodes send them without a sid."""
        self._queue.put_nowait(_Frame("text", None, binary=encode_text(node_id, text)))

    async def send_now(self, client: Client, text: str) -> None:
        """Send outside the queue (the server's first frames to a new socket)."""
        if not self.faults.silent:
            await self._write(client, text)

    # publishing -----------------------------------------------------------------------------

    async def _publish(self) -> None:
        while True:
            frame = await self._queue.get()
            self._sending = True
            try:
                await self._deliver(frame)
            finally:
                self._sending = False

    async def _deliver(self, frame: _Frame) -> None:
        if self._should_drop(frame):
            await self.close_all(1011)
            return
        if self.faults.silent:
            return
        for client in self._targets(frame.sid):
            payload = self._payload(frame, client)
            if payload is not None and not client.muted:
                await self._write(client, payload)

    def _should_drop(self, frame: _Frame) -> bool:
        if self.faults.drop_on is None or frame.event != self.faults.drop_on:
            return False
        self.faults.drop_times -= 1
        if self.faults.drop_times <= 0:
            self.faults.drop_on = None
        return True

    def _targets(self, sid: str | None) -> list[Client]:
        if sid is None:
            return list(self._table.values())
        client = self._table.get(sid)
        return [] if client is None else [client]

    @staticmethod
    def _payload(frame: _Frame, client: Client) -> str | bytes | None:
        if frame.preview is None:
            return frame.text if frame.text is not None else frame.binary
        image, metadata, variant = frame.preview
        if variant == "metadata" and client.preview_metadata:
            return encode_preview_image_with_metadata(image, metadata)
        if variant == "plain" and not client.preview_metadata:
            return encode_preview_image(image, "jpeg")
        return None

    async def _write(self, client: Client, payload: str | bytes) -> None:
        try:
            if isinstance(payload, str):
                await client.ws.send_text(payload)
            else:
                await client.ws.send_bytes(payload)
        except Exception:  # a socket that went away mid-send loses the frame, like ComfyUI
            return
        self.frames_sent += 1
