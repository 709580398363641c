"""The event streams behind the subscriptions, over domain ports (no GraphQL here).

`job_stream`: the job's current state first, then its live events, ending after the terminal
one. `user_stream`: every event of the caller's jobs, replayed from a cursor first. Both turn
the bus's coalesced queue ticks into a fresh `JobQueued` for each waiting job whose position
changed; such a re-sent event carries the cursor of the last real event, so resuming from it
misses nothing. Every follower in the process wakes on the same tick: their position reads
are merged into one queue call at a time (`_PositionReads`), so a thousand waiting followers
cost one Redis round trip per tick, not a thousand.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TypedDict

from stargraph.domain import events as ev
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.queue import JobQueue
from stargraph.domain.types import JobId, Principal, UserId
from stargraph.schema.context import Api

_SNAPSHOT_WAITING_PAGE = 100


async def job_stream(api: Api, principal: Principal, job_id: JobId) -> AsyncIterator[ev.JobEvent]:
    job = await api.jobs.get(principal, job_id)  # NOT_FOUND unless the caller may see it
    cursor = await api.events.last_cursor(job.user_id)
    job = await api.jobs.get(principal, job_id)  # read after the cursor: nothing falls between
    first = await _snapshot(api, job, cursor)
    yield first
    if job.is_terminal:
        return
    waiting = _Positions({})
    waiting.track(first)
    async for item in api.events.follow_job(job.user_id, job.id, after=cursor):
        if isinstance(item, ev.QueueMoved):
            for moved in await waiting.moved(api, item):
                yield moved
        else:
            waiting.track(item)
            yield item


async def user_stream(
    api: Api, principal: Principal, after: str | None
) -> AsyncIterator[ev.JobEvent]:
    stream = api.events.follow_user_and_queue(principal.user_id, after)
    waiting = await _Positions.of_waiting_jobs(api, principal)
    async for item in stream:
        if isinstance(item, ev.QueueMoved):
            for moved in await waiting.moved(api, item):
                yield moved
        else:
            waiting.track(item)
            yield item


class _Positions:
    """The last position sent for each of the follower's waiting jobs."""

    def __init__(self, known: dict[JobId, int | None]) -> None:
        self._known = known
        self._owner: dict[JobId, ev.JobQueued] = {}

    @classmethod
    async def of_waiting_jobs(cls, api: Api, principal: Principal) -> _Positions:
        page = await api.jobs.page(
            principal, frozenset({JobStatus.QUEUED}), _SNAPSHOT_WAITING_PAGE, None
        )
        ids = [job.id for job in page.jobs]
        positions = await _reads(api).positions(ids)
        tracker = cls(dict(positions))
        for job in page.jobs:
            tracker._owner[job.id] = _queued(job, positions.get(job.id), "")
        return tracker

    def track(self, event: ev.JobEvent) -> None:
        if isinstance(event, ev.JobQueued):
            self._known[event.job_id] = event.position
            self._owner[event.job_id] = event
        else:
            self._known.pop(event.job_id, None)
            self._owner.pop(event.job_id, None)

    async def moved(self, api: Api, tick: ev.QueueMoved) -> list[ev.JobEvent]:
        """A JobQueued for each waiting job whose position changed since it was last sent."""
        if not self._known:
            return []
        now = await _reads(api).positions(list(self._known))
        changed: list[ev.JobEvent] = []
        for job_id, position in now.items():
            if position is not None and position != self._known.get(job_id):
                self._known[job_id] = position
                template = self._owner[job_id]
                changed.append(replace(template, at=tick.at, position=position, cursor=tick.cursor))
        return changed


class _PositionReads:
    """One process's position reads, merged: the ids asked for while a queue call runs are
    read together by the next one, so there is at most one call in flight."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked: set[JobId] = set()
        self._next: asyncio.Future[dict[JobId, int | None]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def positions(self, job_ids: list[JobId]) -> dict[JobId, int | None]:
        if not job_ids:
            return {}
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): nothing of the old one holds
            self._loop, self._asked, self._next, self._task = loop, set(), None, None
        self._asked.update(job_ids)
        if self._next is None:
            self._next = loop.create_future()
            self._next.add_done_callback(_retrieve)
        if self._task is None:
            self._task = loop.create_task(self._run(), name="stargraph-position-reads")
        found = await asyncio.shield(self._next)  # one caller's cancellation is its own
        return {job_id: found.get(job_id) for job_id in job_ids}

    async def _run(self) -> None:
        try:
            while (answer := self._next) is not None:
                asked, self._asked, self._next = list(self._asked), set(), None
                try:
                    answer.set_result(await self._queue.positions(asked))
                except Exception as exc:
                    answer.set_exception(exc)
                finally:
                    if not answer.done():  # cancelled: its waiters must not hang
                        answer.cancel()
        finally:
            self._task = None
            if self._next is not None:
                self._next.cancel()
                self._next, self._asked = None, set()


def _retrieve(answer: asyncio.Future[dict[JobId, int | None]]) -> None:
    if not answer.cancelled():
        answer.exception()  # every waiter may have gone: no "never retrieved" warning


_READS: weakref.WeakKeyDictionary[JobQueue, _PositionReads] = weakref.WeakKeyDictionary()


def _reads(api: Api) -> _PositionReads:
    reads = _READS.get(api.queue)
    if reads is None:
        reads = _READS[api.queue] = _PositionReads(api.queue)
    return reads


def _queued(job: Job, position: int | None, cursor: str) -> ev.JobQueued:
    return ev.JobQueued(
        job_id=job.id,
        user_id=job.user_id,
        at=job.created_at,
        status=JobStatus.QUEUED,
        position=position,
        cursor=cursor,
    )


class _Common(TypedDict):
    """The fields every snapshot event shares."""

    job_id: JobId
    user_id: UserId
    status: JobStatus
    cursor: str


async def _snapshot(api: Api, job: Job, cursor: str) -> ev.JobEvent:
    """An event that tells the job's current state."""
    base: _Common = {
        "job_id": job.id,
        "user_id": job.user_id,
        "status": job.status,
        "cursor": cursor,
    }
    at = job.finished_at or job.started_at or job.dispatched_at or job.created_at
    match job.status:
        case JobStatus.QUEUED:
            position = (await _reads(api).positions([job.id])).get(job.id)
            return _queued(job, position, cursor)
        case JobStatus.DISPATCHED:
            return ev.JobDispatched(at=at, **base)
        case JobStatus.RUNNING if job.progress_step is not None and job.progress_max:
            return ev.JobProgress(at=at, step=job.progress_step, max_steps=job.progress_max, **base)
        case JobStatus.RUNNING:
            return ev.JobStarted(at=at, **base)
        case JobStatus.SUCCEEDED:
            images = (await api.images.for_jobs([job.id])).get(job.id, [])
            return ev.JobSucceeded(at=at, image_ids=tuple(i.id for i in images), **base)
        case JobStatus.FAILED:
            code, message = (job.error.code, job.error.message) if job.error else ("FAILED", "")
            return ev.JobFailed(at=at, code=code, message=message, **base)
    return ev.JobCancelled(at=at, **base)
