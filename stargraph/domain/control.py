"""What a user (or an admin) may do to an existing job: read, cancel, reprioritise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from stargraph.domain.errors import Conflict, Forbidden, NotFound
from stargraph.domain.events import EventBus, JobCancelled, job_queued
from stargraph.domain.jobs import IN_ENGINE, Job, JobPage, JobStatus, JobStore
from stargraph.domain.queue import JobQueue
from stargraph.domain.types import JobId, Principal, Priority


class EngineControl(Protocol):
    async def cancel(self, job: Job) -> None:
        """Remove the job from its engine: delete it if waiting there, interrupt if running."""
        ...

    async def withdraw(self, job: Job) -> None:
        """The job, DISPATCHED, is CANCELLED now: a worker holding it on standby (claimed,
        not yet sent) lets it go instead of sending it."""
        ...


# A job can move between the read and the compare-and-set (claimed, started, requeued); a
# few tries follow it. Each try either cancels it or sees it in a newer status.
_CANCEL_TRIES = 3


def _now() -> datetime:
    return datetime.now(UTC)


def check_new_priority(principal: Principal, job: Job, priority: Priority, to_front: bool) -> None:
    """Owners may lower their job, or raise it back up to NORMAL; admins may do anything."""
    if principal.is_admin:
        return
    if to_front:
        raise Forbidden("only administrators may move a job to the front")
    if priority < job.params.priority and priority < Priority.NORMAL:
        raise Forbidden("you may raise a job back to NORMAL at most")


class JobControl:
    """The use cases on existing jobs: `job`, `jobs`, `cancelJob`, `reprioritizeJob`."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        queue: JobQueue,
        events: EventBus,
        engine: EngineControl,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._jobs = jobs
        self._queue = queue
        self._events = events
        self._engine = engine
        self._clock = clock

    async def get(self, principal: Principal, job_id: JobId) -> Job:
        """The job, if the caller may see it; another user's job is NOT_FOUND."""
        job = await self._jobs.get(job_id)
        if job is None or (job.user_id != principal.user_id and not principal.is_admin):
            raise NotFound("job not found")
        return job

    async def page(
        self,
        principal: Principal,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: JobId | None,
    ) -> JobPage:
        """The caller's own jobs, newest first; `after` is the last id of the previous page."""
        return await self._jobs.page_for_user(principal.user_id, statuses, limit, after)

    async def cancel(self, principal: Principal, job_id: JobId) -> Job:
        """End a job as CANCELLED with its hold released: a waiting one leaves the queue, one
        inside an engine is deleted or interrupted there. CONFLICT if it had already ended;
        if it ends on its own meanwhile, that ending stands and the job is returned as is."""
        job = await self.get(principal, job_id)
        if job.is_terminal:
            raise Conflict(f"the job has already ended ({job.status.value})")
        for _ in range(_CANCEL_TRIES):
            cancelled = await self._cancel_from(job)
            if cancelled is not None:
                return cancelled
            job = await self.get(principal, job_id)  # it moved on meanwhile: follow it
            if job.is_terminal:
                break
        return job

    async def _cancel_from(self, job: Job) -> Job | None:
        """One compare-and-set attempt from the status the job was seen in."""
        if job.status is JobStatus.QUEUED:
            await self._queue.remove(job.id)
            cancelled = await self._finish_cancelled(job, only_from=frozenset({JobStatus.QUEUED}))
            if cancelled is not None:
                await self._events.queue_moved()
            return cancelled
        if job.status in IN_ENGINE:
            await self._engine.cancel(job)
            cancelled = await self._finish_cancelled(job, only_from=IN_ENGINE)
            if cancelled is not None and job.status is JobStatus.DISPATCHED:
                await self._engine.withdraw(cancelled)  # once CANCELLED: it cannot be requeued
            return cancelled
        return None

    async def reprioritize(
        self,
        principal: Principal,
        job_id: JobId,
        priority: Priority | None,
        to_front: bool,
    ) -> Job:
        """Move a waiting job to another band (None keeps its band) or, admins only, to the
        very front; owners may lower it or raise it back to NORMAL (`check_new_priority`)."""
        job = await self.get(principal, job_id)
        if job.status is not JobStatus.QUEUED:
            raise Conflict("only a waiting job can be reprioritised")
        new_priority = priority if priority is not None else job.params.priority
        check_new_priority(principal, job, new_priority, to_front)
        updated = await self._jobs.set_priority(job.id, new_priority, to_front)
        if updated is None:
            raise Conflict("the job left the queue meanwhile")
        # one step: no dispatcher can take the job before its event with the new place is out
        announced = job_queued(updated, self._clock(), None)
        await self._queue.reprioritize(job.id, new_priority, to_front, announced)
        return updated

    async def _finish_cancelled(self, job: Job, only_from: frozenset[JobStatus]) -> Job | None:
        cancelled = await self._jobs.finish_unpaid(
            job.id, JobStatus.CANCELLED, None, self._clock(), only_from
        )
        if cancelled is not None:
            await self._events.publish(
                JobCancelled(
                    job_id=job.id,
                    user_id=job.user_id,
                    at=self._clock(),
                    status=JobStatus.CANCELLED,
                )
            )
        return cancelled
