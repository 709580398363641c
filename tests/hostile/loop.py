"""An event loop in a thread of its own, so synchronous Hypothesis tests can drive a live server.

Hypothesis generates examples synchronously; the server (uvicorn, Tortoise, Redis) lives on
this loop and keeps running between examples. `run(coro)` waits for one coroutine's result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel the tasks left behind, then stop the loop."""
        self.run(_cancel_the_rest(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def held_in_thread(
    factory: Callable[[], AbstractAsyncContextManager[T]],
) -> Iterator[tuple[LoopThread, T]]:
    """Enter `factory()` on a loop thread, yield (loop, value), exit it on the same loop."""
    thread = LoopThread()
    stop: asyncio.Event | None = None
    entered: asyncio.Future[T] = thread.loop.create_future()

    async def hold() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with factory() as value:
                entered.set_result(value)
                await stop.wait()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            raise

    holder = asyncio.run_coroutine_threadsafe(hold(), thread.loop)
    try:
        value = thread.run(_wait(entered))
        yield thread, value
    finally:
        if stop is not None:
            thread.loop.call_soon_threadsafe(stop.set)
        try:
            holder.result(60)
        finally:
            thread.close()


async def _wait(future: asyncio.Future[T]) -> T:
    return await future


async def _cancel_the_rest() -> None:
    current = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
