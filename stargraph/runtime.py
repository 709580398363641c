"""How StarGraph's processes run: their logging and their event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Every StarGraph process logs the same way: time, level, logger, message."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on the loop uvicorn picks for the API: uvloop when it is
    installed (it comes with `uvicorn[standard]`), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return asyncio.run(main)
    return uvloop.run(main)
