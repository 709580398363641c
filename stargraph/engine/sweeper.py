"""Housekeeping on a timer (never on the dispatch path): leases, the queue, the slots.

Each pass:
1. expired leases go back to their places (a dispatcher died between claim and send);
2. if Redis lost its data (flush, restart without persistence) the queue is rebuilt from the
   jobs table and the slots are re-taken for the jobs the table says are in an engine;
   otherwise QUEUED jobs that Redis does not hold are put back (a crash between the
   submission's commit and its enqueue);
3. slots held for jobs that are no longer inside that backend are freed, and the pool's
   in-flight hints are refreshed;
4. the pool's view is written to the backends board for API processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from redis.asyncio import Redis

from stargraph.domain.backends import BackendPool, SlotBook
from stargraph.domain.jobs import JobStore
from stargraph.domain.queue import JobQueue
from stargraph.domain.submit import restore_queue
from stargraph.domain.types import BackendId, JobId
from stargraph.engine.board import BackendBoard

log = logging.getLogger(__name__)

# Backends per Redis round trip. With a thousand backends, one round trip for all of them made
# the event loop parse every reply in one step, stalling the worker's sockets for 15–170 ms.
_CHUNK = 100


class RedisMarker:
    """A key whose absence means Redis lost its data since the last pass."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}:{{engine}}:alive"

    async def was_lost(self) -> bool:
        """True (once) when the marker was missing; sets it again."""
        return bool(await self._redis.set(self._key, b"1", nx=True))


class Sweeper:
    def __init__(
        self,
        *,
        queue: JobQueue,
        jobs: JobStore,
        slots: SlotBook,
        pool: BackendPool,
        marker: RedisMarker,
        board: BackendBoard | None = None,
        interval_s: float = 2.0,
    ) -> None:
        self._queue = queue
        self._jobs = jobs
        self._slots = slots
        self._pool = pool
        self._marker = marker
        self._board = board
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("housekeeping pass failed; trying again next time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)

    async def sweep_once(self) -> None:
        returned = await self._queue.expire_leases()
        if returned:
            log.info("leases expired; back in the queue: %s", ", ".join(returned))
        if await self._marker.was_lost():
            await self._rebuild()
        else:
            restored = await restore_queue(self._jobs, self._queue)
            if restored:
                log.info("QUEUED jobs missing from the queue put back: %s", ", ".join(restored))
        await self._repair_slots()
        if self._board is not None:
            snapshot = self._pool.snapshot()
            for start in range(0, len(snapshot), _CHUNK):
                await self._board.publish(snapshot[start : start + _CHUNK])

    async def _rebuild(self) -> None:
        waiting = await self._jobs.queued()
        await self._queue.rebuild(waiting)
        for job in await self._jobs.in_engine():
            if job.backend in self._pool.backends:
                await self._slots.confirm(job.backend, job.id)
        log.info("queue rebuilt from the jobs table (%d waiting)", len(waiting))

    async def _repair_slots(self) -> None:
        """Free the slots of jobs that are not inside their backend any more. The slots are
        read before the jobs: a slot is confirmed only after its job is marked DISPATCHED."""
        chunks = _in_chunks(self._pool.backends)
        held: dict[BackendId, list[JobId]] = {}
        for chunk in chunks:
            held.update(await self._slots.held(chunk))
        placed = await self._jobs.placements()
        for backend, job_ids in held.items():
            for job_id in job_ids:
                placement = placed.get(job_id)
                if placement is None or placement.backend != backend:
                    await self._slots.release(backend, job_id)
        for chunk in chunks:
            for backend, count in (await self._slots.counts(chunk)).items():
                self._pool.set_inflight(backend, count)


def _in_chunks(backends: Sequence[BackendId]) -> list[Sequence[BackendId]]:
    return [backends[i : i + _CHUNK] for i in range(0, len(backends), _CHUNK)]
