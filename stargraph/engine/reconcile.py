"""Reconciliation: make the jobs table agree with what one backend really holds.

Run by the listener on every (re)connect, when a `status` broadcast says the backend's queue
moved while it watches jobs whose messages do not reach it (posted by a worker that died, or
by another process), and on its housekeeping tick. For
every job the table says is DISPATCHED/RUNNING on the backend:

- still in the backend's queue: leave it (or fail it past its timeout, then interrupt it);
- finished (`/history/{id}`): end it from the history (images, then settlement);
- in neither, and not dispatched moments ago (a POST may still be on its way): the backend
  forgot it (restart, queue deleted) → back to its old place in the queue, or FAILED once
  it has used its attempts.

The queue is read before the history: a job leaves ComfyUI's queue only after its history
entry is written, so "not queued, then no history" really means gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from stargraph.domain.backends import EngineGateway, EngineQueue, SlotBook
from stargraph.domain.jobs import Job, JobStatus, JobStore, Placement
from stargraph.domain.progress import follow, outcome_of_history
from stargraph.domain.types import BackendId, JobId
from stargraph.engine.results import Finisher

log = logging.getLogger(__name__)

TIMEOUT = "TIMEOUT"
LOST = "ENGINE_LOST"


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    job_timeout_s: float
    post_grace_s: float  # how long a just-dispatched job may be missing from the backend
    max_attempts: int


@dataclass(slots=True)
class Report:
    """What one pass found."""

    in_flight: set[JobId] = field(default_factory=set)  # what the table says runs here
    foreign: set[JobId] = field(default_factory=set)  # inside the backend, messages not ours
    ended: set[JobId] = field(default_factory=set)
    requeued: set[JobId] = field(default_factory=set)


def _now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        *,
        backend: BackendId,
        engine: EngineGateway,
        jobs: JobStore,
        finisher: Finisher,
        slots: SlotBook,
        policy: ReconcilePolicy,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._backend = backend
        self._engine = engine
        self._jobs = jobs
        self._finisher = finisher
        self._slots = slots
        self._policy = policy
        self._clock = clock

    async def reconcile(
        self,
        only: Collection[JobId] | None = None,
        skip: Collection[JobId] = (),
        followed: Collection[JobId] = (),
    ) -> Report:
        """One pass over this backend's in-flight jobs (or only those in `only`). Jobs in
        `skip` are being ended already; jobs in `followed` are getting their messages, so
        they are only checked for their timeout (after a reconnect, pass none)."""
        report = Report()
        jobs = [
            job
            for job in await self._jobs.in_engine(self._backend)
            if job.id not in skip and (only is None or job.id in only)
        ]
        report.in_flight = {job.id for job in jobs}
        # A followed job within its time needs nothing from the backend: with every job
        # so, the pass asks nothing of it (a housekeeping tick on a healthy backend).
        jobs = [job for job in jobs if job.id not in followed or self._timed_out(job)]
        if not jobs:
            return report
        queue = await self._engine.queue(self._backend)
        for job in jobs:
            if job.id in followed:  # timed out
                if queue.holds(job.id):
                    await self.time_out(job, queue)
                    report.ended.add(job.id)
                continue
            await self._one(job, queue, report)
            if queue.holds(job.id) and job.id not in report.ended:
                report.foreign.add(job.id)
        return report

    async def _one(self, job: Job, queue: EngineQueue, report: Report) -> None:
        if queue.holds(job.id):
            await self._still_there(job, queue, report)
            return
        entry = await self._engine.history(self._backend, job.id)
        outcome = outcome_of_history(follow(job), entry) if entry else None
        if outcome is not None:
            await self._slots.release(self._backend, job.id)
            await self._finisher.end(job, self._backend, outcome)
            report.ended.add(job.id)
        elif not self._maybe_in_transit(job):
            await self._forgotten(job, report)

    async def _still_there(self, job: Job, queue: EngineQueue, report: Report) -> None:
        if self._timed_out(job):
            await self.time_out(job, queue)
            report.ended.add(job.id)
        elif job.id in queue.running and job.status is JobStatus.DISPATCHED:
            await self._jobs.mark_running(job.id, self._clock())  # its start was not seen

    async def time_out(self, job: Job, queue: EngineQueue) -> None:
        """FAILED first (so the interrupt's echo cannot turn it into CANCELLED), then stop it
        inside the backend."""
        await self._finisher.fail(
            job, TIMEOUT, f"the job ran longer than {self._policy.job_timeout_s:g} s"
        )
        if job.id in queue.pending:
            await self._engine.delete_pending(self._backend, job.id)
            await self._slots.release(self._backend, job.id)
        else:
            await self._engine.interrupt(self._backend, job.id)  # its end frees the slot

    async def expire_unreachable(self) -> set[JobId]:
        """While the backend cannot be reached: fail the jobs on it that ran out of time
        (refunded; should the backend come back and start one, its listener interrupts it)."""
        expired = set()
        for job in await self._jobs.in_engine(self._backend):
            if self._timed_out(job) and await self._finisher.fail(
                job,
                TIMEOUT,
                f"the job ran longer than {self._policy.job_timeout_s:g} s "
                "and its engine cannot be reached",
            ):
                await self._slots.release(self._backend, job.id)
                expired.add(job.id)
        return expired

    async def _forgotten(self, job: Job, report: Report) -> None:
        await self._slots.release(self._backend, job.id)
        if job.attempts >= self._policy.max_attempts:
            await self._finisher.fail(
                job, LOST, f"the engine lost the job {job.attempts} times", self._backend
            )
            report.ended.add(job.id)
        elif await self._finisher.requeue(job):
            report.requeued.add(job.id)

    def timed_out(self, job: Job | Placement) -> bool:
        """The job has been inside the engine longer than the policy allows."""
        return self._timed_out(job)

    def _timed_out(self, job: Job | Placement) -> bool:
        since = job.started_at or job.dispatched_at
        limit = timedelta(seconds=self._policy.job_timeout_s)
        return since is not None and self._clock() - since > limit

    def _maybe_in_transit(self, job: Job) -> bool:
        sent = job.dispatched_at
        grace = timedelta(seconds=self._policy.post_grace_s)
        return sent is not None and self._clock() - sent < grace


class InEngineListing(NamedTuple):
    """One backend's jobs as the shared read saw them, and when that read began
    (`time.monotonic()`): what changed after it is not in `jobs` yet."""

    jobs: Mapping[JobId, Placement]
    read_at: float


class InEngineTable:
    """What the jobs table says is inside each backend (placements only, not whole jobs),
    read for every backend in one query and shared by a worker's listeners; at most
    `max_age_s` old. A listener's housekeeping tick compares it with what it follows, and
    reads its own backend afresh (a full pass) only when they differ: a thousand listeners
    cost one light query every `max_age_s`, not a thousand."""

    def __init__(self, jobs: JobStore, max_age_s: float) -> None:
        self._jobs = jobs
        self._max_age_s = max_age_s
        self._by_backend: dict[BackendId, dict[JobId, Placement]] = {}
        self._read_at = -float("inf")
        self._reading: asyncio.Future[None] | None = None

    async def of(self, backend: BackendId) -> InEngineListing:
        if time.monotonic() - self._read_at > self._max_age_s:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
            await asyncio.shield(self._reading)
        return InEngineListing(self._by_backend.get(backend, {}), self._read_at)

    async def _read(self) -> None:
        started = time.monotonic()
        try:
            by_backend: dict[BackendId, dict[JobId, Placement]] = defaultdict(dict)
            for job_id, placement in (await self._jobs.placements()).items():
                by_backend[placement.backend][job_id] = placement
            self._by_backend, self._read_at = dict(by_backend), started
        finally:
            self._reading = None
