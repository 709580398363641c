"""A lean HTTP/1.1 client for the engines' APIs (ComfyUI, Ollama): keep-alive connections
per server, JSON in and out, httptools' C parser for the answers.

Why not httpx: every job's dispatch is a POST, sent the moment a slot frees, usually after
the worker's loop has idled. Through httpx one request to the simulator on loopback cost
0.6 ms of CPU back to back and 1.6 ms after 20 ms idle; on a bare asyncio connection 0.05
and 0.3 ms. The difference is code: httpx, httpcore and anyio run several hundred Python
calls per request, and after an idle spell that code is cold.

Failures are two kinds: `ConnectFailed` (the request surely never reached the server) and
`ExchangeFailed` (it may have: the connection broke, or the time ran out after sending, which
raises its subclass `ExchangeTimedOut`).
A GET (or a request the caller calls idempotent) on a kept-alive connection that the server
had closed is retried once on a new one.
"""

from __future__ import annotations

import asyncio
import json
import select
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import httptools

IDLE_LIMIT_S = 20.0  # a kept-alive connection idle longer is closed (aiohttp keeps 75 s)
MAX_BODY_BYTES = 512 * 1024 * 1024


class HttpError(Exception):
    """Base of this module's failures."""


class ConnectFailed(HttpError):
    """No connection could be made (refused, unresolvable, timed out): nothing was sent."""


class ExchangeFailed(HttpError):
    """The request was sent, or may have been, but no whole answer came back."""


class ExchangeTimedOut(ExchangeFailed):
    """The request was sent, or may have been, and no whole answer came back in time."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """`connect`: to get a connection (pool wait included); `total`: the exchange after it."""

    connect: float = 5.0
    total: float = 30.0


@dataclass(frozen=True, slots=True)
class Response:
    """A whole answer. `path` is the request's, for messages."""

    method: str
    path: str
    status: int
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not)."""
        return json.loads(self.body)

    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a server's requests go: parsed once from its base URL."""

    host: str
    port: int
    tls: bool
    prefix: str  # a path the server is mounted under, without the trailing slash
    host_header: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """`http(s)://host[:port][/prefix]` (ValueError for anything else)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host_header = parts.netloc.rpartition("@")[2]  # never send credentials in Host
        return cls(parts.hostname, port, tls, parts.path.rstrip("/"), host_header)


class _Connection(asyncio.Protocol):
    """One socket; one exchange at a time (no pipelining)."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._framed = False  # the answer has a length or chunks (else it ends at EOF)
        self._headers_done = False
        self._received_any = False
        self.dropped_unanswered = False  # the peer closed it before any byte of the answer
        self.keep_alive = True
        self.closed = False
        self.idle_since = time.monotonic()

    # asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ExchangeFailed(f"malformed answer: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pending = self._answer is not None and not self._answer.done()
        self.dropped_unanswered = pending and not self._received_any
        if self._headers_done and not self._framed:
            self._complete()  # an answer delimited by the end of the connection
        else:
            self._fail(ExchangeFailed(f"connection closed before the answer ended ({exc!r})"))

    # httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(ExchangeFailed(f"answer larger than {self._max_body} bytes"))
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        self._complete()

    # the exchange -------------------------------------------------------------------------

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; the status and body of its answer."""
        assert self._transport is not None
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._answer = answer
        self._chunks, self._size = [], 0
        self._framed = self._headers_done = self._received_any = False
        self._transport.write(request)
        return await answer

    def usable(self) -> bool:
        """Still open, reusable, and not idle so long that the server may close it now."""
        return (
            not self.closed
            and self.keep_alive
            and self._transport is not None
            and not self._transport.is_closing()
            and time.monotonic() - self.idle_since < IDLE_LIMIT_S
        )

    def quiet(self) -> bool:
        """Nothing waits unread on the socket. A server that closed an idle connection has
        sent its FIN, which an event loop busy elsewhere may not have read yet: a request
        sent on it then dies unanswered, and a POST cannot be sent again."""
        sock = None if self._transport is None else self._transport.get_extra_info("socket")
        if sock is None:
            return True
        poller = select.poll()  # not select.select: descriptors past 1024 are common here
        try:
            poller.register(sock.fileno(), select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _complete(self) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result((self._parser.get_status_code(), b"".join(self._chunks)))
        self._answer = None

    def _fail(self, exc: ExchangeFailed) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        self._answer = None
        self.close()


@dataclass
class _Pool:
    slots: asyncio.Semaphore  # one per connection allowed at once
    idle: deque[_Connection] = field(default_factory=deque)


class HttpClient:
    """Requests to any number of servers, each with its own pool of kept-alive connections
    (at most `max_connections` at once per server; more requests wait for one)."""

    def __init__(self, *, max_connections: int = 32, max_body: int = MAX_BODY_BYTES) -> None:
        self._max_connections = max_connections
        self._max_body = max_body
        self._pools: dict[Origin, _Pool] = {}
        self._closed = False
        self._tls: ssl.SSLContext | None = None

    async def request(
        self,
        origin: Origin,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        timeouts: Timeouts,
        idempotent: bool | None = None,
    ) -> Response:
        """One exchange. Raises ConnectFailed or ExchangeFailed; any status is an answer.
        An `idempotent` request (by default a GET) is sent again when a kept-alive socket
        turns out to have been closed by the server before it answered anything."""
        if self._closed:
            raise ConnectFailed("the client is closed")
        target = origin.prefix + path + ("?" + urlencode(params) if params else "")
        request = _encode(origin, method, target, json_body)
        pool = self._pool(origin)
        if pool.slots.locked():  # else acquiring takes no time, and needs no timer
            try:
                async with asyncio.timeout(timeouts.connect):
                    await pool.slots.acquire()
            except TimeoutError:
                raise ConnectFailed(f"no free connection within {timeouts.connect} s") from None
        else:
            await pool.slots.acquire()
        try:
            resend = method == "GET" if idempotent is None else idempotent
            status, body = await self._exchange(origin, pool, resend, request, timeouts)
        finally:
            pool.slots.release()
        return Response(method, path, status, body)

    async def aclose(self) -> None:
        """Close every idle connection; ones in use close when their exchange ends."""
        self._closed = True
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()

    def _pool(self, origin: Origin) -> _Pool:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(slots=asyncio.Semaphore(self._max_connections))
        return pool

    async def _exchange(
        self, origin: Origin, pool: _Pool, resend: bool, request: bytes, timeouts: Timeouts
    ) -> tuple[int, bytes]:
        connection = _take_idle(pool)
        if connection is not None:
            try:
                return await self._on(connection, pool, request, timeouts)
            except ExchangeFailed:
                if not (resend and connection.dropped_unanswered):
                    raise
                # the server closed the kept-alive socket as we reused it: one more try
        connection = await self._connect(origin, timeouts.connect)
        return await self._on(connection, pool, request, timeouts)

    async def _on(
        self, connection: _Connection, pool: _Pool, request: bytes, timeouts: Timeouts
    ) -> tuple[int, bytes]:
        done = False
        try:
            async with asyncio.timeout(timeouts.total):
                answer = await connection.exchange(request)
            done = True
        except TimeoutError:
            raise ExchangeTimedOut(f"no whole answer within {timeouts.total} s") from None
        finally:
            if done and connection.usable() and not self._closed:
                connection.idle_since = time.monotonic()
                pool.idle.append(connection)
            else:  # a half-done exchange (timeout, cancel, error) leaves the socket unusable
                connection.close()
        return answer

    async def _connect(self, origin: Origin, within_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(within_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._max_body),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"connecting took over {within_s} s") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect: {exc}") from exc
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _take_idle(pool: _Pool) -> _Connection | None:
    """The most recently used idle connection that can still be used and that the server
    has not closed meanwhile (others are closed)."""
    while pool.idle:
        connection = pool.idle.pop()
        if connection.usable() and connection.quiet():
            return connection
        connection.close()
    return None


def _encode(origin: Origin, method: str, target: str, json_body: Any) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"
    if json_body is None:
        if method == "POST":
            return (head + "Content-Length: 0\r\n\r\n").encode()
        return (head + "\r\n").encode()
    body = json.dumps(json_body, separators=(",", ":")).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body
