"""The event streams behind the subscriptions, over domain ports (no GraphQL here).

`job_stream`: the job's current state first, then its live events, ending after the terminal
one. `user_stream`: every event of the caller's jobs, replayed from a cursor first. Both turn
the bus's coalesced queue ticks into a fresh `JobQueued` for each waiting job whose position
changed; such a re-sent event carries the cursor of the last real event, so resuming from it
misses nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from stargraph.domain import events as ev
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.types import JobId, Principal
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
        positions = await api.queue.positions(ids) if ids else {}
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
        now = await api.queue.positions(list(self._known))
        changed = []
        for job_id, position in now.items():
            if position is not None and position != self._known.get(job_id):
                self._known[job_id] = position
                template = self._owner[job_id]
                changed.append(replace(template, at=tick.at, position=position, cursor=tick.cursor))
        return changed


def _queued(job: Job, position: int | None, cursor: str) -> ev.JobQueued:
    return ev.JobQueued(
        job_id=job.id,
        user_id=job.user_id,
        at=job.created_at,
        status=JobStatus.QUEUED,
        position=position,
        cursor=cursor,
    )


async def _snapshot(api: Api, job: Job, cursor: str) -> ev.JobEvent:
    """An event that tells the job's current state."""
    base = {"job_id": job.id, "user_id": job.user_id, "status": job.status, "cursor": cursor}
    at = job.finished_at or job.started_at or job.dispatched_at or job.created_at
    match job.status:
        case JobStatus.QUEUED:
            return _queued(job, await api.queue.position(job.id), cursor)
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
