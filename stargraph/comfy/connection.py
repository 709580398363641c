"""The WebSocket of one ComfyUI server, kept open: parsed messages in, reconnects announced.

    socket = ComfySocket("http://127.0.0.1:8188", client_id="listener-1")
    async for event in socket:          # runs until socket.aclose()
        match event:
            case Connected(reconnect=True): ...   # reconcile from /queue and /history
            case Disconnected(): ...              # backend down: no new jobs
            case Progress(): ...

- One socket at a time: the old one is closed before a new one opens, because two live sockets
  with one clientId silence each other (protocol §2.1).
- Back-off between failed attempts: jittered, growing, capped; attempts never stop.
- Keepalive pings (the server answers them); a missing pong closes the socket.
- Silence detector: while `set_active(True)` (a job is believed to be in this server) a socket
  that delivers no frame for `silence_timeout` seconds is closed and reopened. One timer
  watches a whole silence; a frame only notes the time.
- No permessage-deflate.
- Frames that do not parse are logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from stargraph.comfy.messages import (
    Connected,
    Disconnected,
    MalformedFrame,
    SocketEvent,
    parse_binary,
    parse_text,
)

logger = logging.getLogger(__name__)
FEATURE_FLAGS = '{"type": "feature_flags", "data": {"supports_preview_metadata": true}}'


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt n (1-based): `initial · factor^(n-1)`, capped at
    `maximum`, then scaled by a random factor in [1 - jitter, 1]."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 5.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return base * (1 - self.jitter * random.random())


_TYPE_FIRST = '{"type": "'  # ComfyUI writes json.dumps({"type": ..., "data": ...})


def _type_of(frame: str) -> str | None:
    """The type of a text frame laid out as ComfyUI writes it, read without parsing it (None
    when laid out otherwise: such a frame is parsed)."""
    if not frame.startswith(_TYPE_FIRST):
        return None
    end = frame.find('"', len(_TYPE_FIRST))
    return frame[len(_TYPE_FIRST) : end] if end > 0 else None


def ws_url(base_url: str, client_id: str) -> str:
    """`http://host:port` → `ws://host:port/ws?clientId=…` (https → wss)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/ws?clientId={quote(client_id, safe='')}"


class ComfySocket:
    """An async iterator of `SocketEvent`s from one ComfyUI server, for one client id."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        *,
        backoff: Backoff | None = None,
        silence_timeout: float = 60.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        preview_metadata: bool = True,
        max_size: int | None = 16 * 1024 * 1024,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        self.client_id = client_id
        self._skip = skip  # text frame types dropped unparsed (the caller has no use for them)
        self.url = ws_url(base_url, client_id)
        self.backoff = backoff or Backoff()
        self.silence_timeout = silence_timeout
        self.preview_metadata = preview_metadata
        self._ping = (ping_interval, ping_timeout)
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._max_size = max_size
        self._ws: ClientConnection | None = None
        self._closing = asyncio.Event()
        self._active = False
        self._deadline: asyncio.Timeout | None = None  # of the receive now waiting, if any
        self._quiet_since = 0.0  # loop time the silence is counted from
        self._watchdog: asyncio.TimerHandle | None = None
        self._ever_connected = False
        self._down_reported = False

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def set_active(self, active: bool) -> None:
        """Tell the socket whether a job is believed to be queued or running on this server.
        Either way the silence is counted afresh from now."""
        self._active = active
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to watch yet
            self._quiet_since = asyncio.get_running_loop().time()
            self._arm_silence()

    def __aiter__(self) -> AsyncIterator[SocketEvent]:
        return self._events()

    async def aclose(self) -> None:
        """Stop for good: close the socket; the iteration ends."""
        self._closing.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    # the loop -------------------------------------------------------------------------------

    async def _events(self) -> AsyncIterator[SocketEvent]:
        attempt = 0
        while not self._closing.is_set():
            try:
                ws = await self._open()
            except _SocketEnded as failure:
                attempt += 1
                if not self._down_reported:
                    self._down_reported = True
                    yield Disconnected(failure.reason)
                await self._pause(self.backoff.delay(attempt))
                continue
            if ws is None:
                return
            attempt = 0
            self._down_reported = False
            yield Connected(self.client_id, reconnect=self._ever_connected)
            self._ever_connected = True
            reason = "closed"
            try:
                while True:
                    event = await self._receive(ws)
                    if event is not None:
                        yield event
            except _SocketEnded as ended:
                reason = ended.reason
            finally:
                await self._close(ws)
            if not self._closing.is_set():
                self._down_reported = True
                yield Disconnected(reason)

    async def _open(self) -> ClientConnection | None:
        """Connect (unless closing: then None). Raises _SocketEnded."""
        opening = connect(
            self.url,
            ping_interval=self._ping[0],
            ping_timeout=self._ping[1],
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
            max_size=self._max_size,
            # Frames are small JSON and already-compressed previews: permessage-deflate would
            # cost CPU on both ends for every frame and save next to nothing.
            compression=None,
        )
        connecting = asyncio.ensure_future(opening)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({connecting, closing}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            connecting.cancel()
            raise
        finally:
            closing.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            return None
        try:
            ws = connecting.result()
        except (OSError, InvalidHandshake, TimeoutError, InvalidURI) as exc:
            raise _SocketEnded(f"cannot connect: {exc!r}") from exc
        if self._closing.is_set():  # aclose() won the race after all
            await ws.close()
            return None
        if self.preview_metadata:
            try:
                await ws.send(FEATURE_FLAGS)
            except ConnectionClosed as exc:
                raise _SocketEnded(f"closed at once: {exc!r}") from exc
        self._ws = ws
        return ws

    async def _receive(self, ws: ClientConnection) -> SocketEvent | None:
        """The next event (None for a skipped frame); raises _SocketEnded."""
        try:
            async with asyncio.timeout(None) as deadline:
                self._deadline = deadline
                self._quiet_since = asyncio.get_running_loop().time()
                self._arm_silence()
                frame = await ws.recv()
        except TimeoutError:
            logger.warning(
                "ComfyUI socket %s silent for %.1f s while a job is in flight; reconnecting",
                self.url,
                self.silence_timeout,
            )
            raise _SocketEnded("silent") from None
        except ConnectionClosed as exc:
            raise _SocketEnded(f"closed: {exc}") from None
        finally:
            self._deadline = None
        return self._parse(frame)

    def _parse(self, frame: str | bytes) -> SocketEvent | None:
        if self._skip and isinstance(frame, str) and _type_of(frame) in self._skip:
            return None
        try:
            return parse_binary(frame) if isinstance(frame, bytes) else parse_text(frame)
        except MalformedFrame as exc:
            logger.warning("ComfyUI socket %s: skipped a malformed frame (%s)", self.url, exc)
            return None

    def _arm_silence(self) -> None:
        """Start the watchdog unless it runs: one timer per silence, not one per frame."""
        if self._active and self._watchdog is None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_at(self._quiet_since + self.silence_timeout, self._watch)

    def _watch(self) -> None:
        """Expire the waiting receive if nothing came for `silence_timeout`; else look again
        when the silence, as counted now, would reach it."""
        self._watchdog = None
        if not self._active or self._closing.is_set():
            return  # set_active(True) starts it again
        loop = asyncio.get_running_loop()
        deadline = self._deadline
        if deadline is None:  # not waiting for a frame: the consumer holds the last one
            self._quiet_since = loop.time()
        elif loop.time() >= self._quiet_since + self.silence_timeout:
            if not deadline.expired():
                with contextlib.suppress(RuntimeError):
                    deadline.reschedule(loop.time())  # the receive raises TimeoutError
            return
        self._arm_silence()

    async def _close(self, ws: ClientConnection) -> None:
        self._ws = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        with contextlib.suppress(Exception):
            await ws.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


class _SocketEnded(Exception):
    """A socket could not be opened, or stopped delivering."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
