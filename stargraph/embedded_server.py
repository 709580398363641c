"""uvicorn inside a process that owns its signals (the worker, in-process simulators)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from socket import socket

import uvicorn

# uvicorn logs every server of a process through this one logger.
_UVICORN_LOGGER = logging.getLogger("uvicorn.error")
_embedded: ContextVar[bool] = ContextVar("stargraph_embedded_server", default=False)


class _HostLinesOnly(logging.Filter):
    """Below WARNING, an embedded server's lines (started, finished, each WebSocket opened)
    would read as the host server's: `serve --simulate` logged "Started server process"
    twice. An embedded server's own task, and every connection it serves, runs in a context
    that says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _embedded.get()


_FILTER = _HostLinesOnly()


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to its host: the host stops it by
    setting `should_exit`. It logs warnings and errors only."""

    async def serve(self, sockets: list[socket] | None = None) -> None:
        if _FILTER not in _UVICORN_LOGGER.filters:
            _UVICORN_LOGGER.addFilter(_FILTER)
        token = _embedded.set(True)  # the connections it accepts inherit this context
        try:
            await super().serve(sockets=sockets)
        finally:
            _embedded.reset(token)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
