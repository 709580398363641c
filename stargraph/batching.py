"""Natural batching: calls made while a batch is in flight go together in the next one.

A lone call goes at once, so it waits for nothing; under load, N concurrent calls cost a few
round trips instead of N. No timer decides a batch (unless a call may `linger`): the
round trip in flight does. The adapters use it on paths every submission takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# One result per item, in order: its value, or the exception its caller gets.
RunBatch = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    """Runs `run_batch` over the items of concurrent calls, at most `max_batch` at a time.

    Each call gets its own item's result or exception; an exception raised by `run_batch`
    itself goes to every call of that batch. A caller that is cancelled stops waiting, but an
    item already handed over still runs (the batch is under way). Batches run in a task of
    their own, in a copy of the context of the call that started it: a caller inside a
    database transaction must not go through a batcher. A call that may `linger` waits up to
    `linger_s` for company when no batch is in flight; any other call starts one at once.
    """

    def __init__(
        self,
        run_batch: RunBatch[T, R],
        *,
        max_batch: int = 256,
        linger_s: float = 0.0,
        name: str = "batch",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._name = f"stargraph-{name}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, item: T, *, linger: bool = False) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): nothing of the old one holds
            self._loop, self._pending, self._task, self._timer = loop, [], None, None
        answer: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, answer))
        if self._task is None:
            if not (linger and self._linger_s > 0):
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(self._linger_s, self._start)
        return await answer

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None and self._loop is not None:
            self._task = self._loop.create_task(self._drain(), name=self._name)

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._settle(batch)
        finally:
            self._task = None
            for _, answer in (*batch, *self._pending):
                answer.cancel()  # only those still waiting: the batcher itself was cancelled
            self._pending = []

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run_batch([item for item, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, answer), result in zip(batch, results, strict=True):
            if answer.done():  # its caller was cancelled
                continue
            if isinstance(result, BaseException):
                answer.set_exception(result)
            else:
                answer.set_result(result)
