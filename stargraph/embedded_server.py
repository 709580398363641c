"""uvicorn inside a process that owns its signals (the worker, in-process simulators)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from socket import socket
from typing import Any

import uvicorn

# uvicorn logs every server of a process through these loggers.
_UVICORN_LOGGERS = (logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access"))
_embedded: ContextVar[bool] = ContextVar("stargraph_embedded_server", default=False)


class _HostLinesOnly(logging.Filter):
    """Below WARNING, an embedded server's lines (started, finished, each request and
    WebSocket) would read as the host server's: `serve --simulate` logged "Started server
    process" twice. An embedded server's own task, and every connection it serves, runs in a
    context that says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _embedded.get()


_FILTER = _HostLinesOnly()


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to its host: the host stops it by
    setting `should_exit`. It logs warnings and errors only.

    uvicorn configures logging process-wide when its settings are made: its own logging
    config, `log_level` and `access_log=False` would each change the host's logging (its
    access lines gone, its format replaced). So the server makes its settings itself from
    uvicorn's other `options`, and refuses those three; its own lines below WARNING are
    dropped instead."""

    def __init__(self, app: Any, **options: Any) -> None:
        for name in ("log_config", "log_level", "access_log"):
            if name in options:
                raise TypeError(f"an embedded server leaves {name} to its host")
        super().__init__(uvicorn.Config(app, log_config=None, **options))

    async def serve(self, sockets: list[socket] | None = None) -> None:
        for logger in _UVICORN_LOGGERS:
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
        token = _embedded.set(True)  # the connections it accepts inherit this context
        try:
            await super().serve(sockets=sockets)
        finally:
            _embedded.reset(token)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
