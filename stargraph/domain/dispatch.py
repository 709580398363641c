"""The dispatcher: a free slot and a waiting job meet, and the job goes to a backend.

One step: wait for a free slot (pool signal) → pick a backend by the local hints, for the
checkpoint of the job read ahead → claim the best waiting job into a slot there, lease and
reservation in one Redis script (or wait for work: queue signal) → should the job's
checkpoint be loaded on another free backend and not on that one, move its slot there; then,
in a task of its own while the next step claims for the next free slot: QUEUED → DISPATCHED
(compare-and-set) → POST with prompt id = job id and client id = that backend's listener →
confirm the slot and ack. While every slot is busy the next jobs are read ahead, so a freed
slot costs one Redis script and one UPDATE before its POST; and the ending of the job that
freed it waits for that POST (`BackendPool.refills_first`).

Standby: when the job running on a full backend reaches its last steps
(`BackendPool.near_end`), the next job is claimed into a slot one over `max_inflight` and
marked DISPATCHED at once; its POST waits until a job leaves that backend, then goes with no
Redis script or UPDATE before it. So ComfyUI never holds more than `max_inflight` jobs, and
a job leaves the queue only a few steps before a slot is free for it. A standby whose
backend goes away, that waits longer than `standby_hold_s`, or that is held when the
dispatcher stops, goes back to its old place in the queue, its attempt not counted. One whose
job is cancelled meanwhile is let go unsent: the cancel withdraws it (`SlotBook.withdraw`,
heard by every worker); should that notice be lost, it is sent, and the listener interrupts
it as it starts.

Crash safety: a job claimed but not yet DISPATCHED returns through its lease; a DISPATCHED
job that never reached the backend (a standby among them) is found by reconciliation
(neither in the backend's queue nor in its history, once `post_grace_s`, longer than any
standby's hold, has passed) and goes back to the queue. Several dispatcher processes need no
lock: the queue's atomic claim hands each job to one of them, and takes its slot only while
the backend has fewer than `max_inflight`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from stargraph.domain.backends import (
    BackendPool,
    BackendRejected,
    BackendUncertain,
    BackendUnreachable,
    EngineGateway,
    SlotBook,
)
from stargraph.domain.events import EventBus, JobDispatched, JobFailed, job_queued
from stargraph.domain.jobs import Job, JobError, JobStatus, JobStore
from stargraph.domain.queue import Claim, JobQueue
from stargraph.domain.types import BackendId, JobId

log = logging.getLogger(__name__)

REJECTED = "COMFY_VALIDATION"
_RETRY_S = 0.5
STANDBY_HOLD_MAX_S = 15.0  # the default of `DispatchPolicy.standby_hold_s`
_READ_AHEAD_MAX = 4  # jobs read ahead at most, for slots freeing on several backends at once
UNREACHABLE = "DISPATCH_FAILED"


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    lease_s: float
    max_attempts: int
    # A safety net only: the queue's signal wakes the dispatcher at once when work arrives;
    # this bounds the wait should a signal ever be lost (e.g. while Redis restarts).
    idle_wait_s: float = 5.0
    # The longest a job on standby waits for its backend's room before it goes back to the
    # queue; well within the lease and reconciliation's grace for a job not yet posted.
    standby_hold_s: float = STANDBY_HOLD_MAX_S


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Ticket:
    """A claimed job and the backend whose slot it holds."""

    claim: Claim
    job: Job
    backend: BackendId
    standby: bool = False  # claimed one over max_inflight: sent once the backend has room


class _ReadAhead:
    """The queue's next jobs, read from the store while every slot is busy, so that freed
    slots cost no database read before their POSTs.

    A copy may be stale by the time it is claimed; only its fixed fields are relied on.
    Its status and attempts are checked by `JobStore.mark_dispatched`'s compare-and-set.
    """

    def __init__(self, queue: JobQueue, jobs: JobStore, depth: int) -> None:
        self._queue = queue
        self._jobs = jobs
        self._depth = depth  # how many slots may free at once (one per backend, bounded)
        self._next: dict[JobId, Job] = {}
        self._reading: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Read the queue's first jobs in the background (once at a time)."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            kept: dict[JobId, Job] = {}  # in queue order
            for job_id in await self._queue.heads(self._depth):
                if (job := self._next.get(job_id) or await self._jobs.get(job_id)) is not None:
                    kept[job_id] = job
            self._next = kept
        except Exception:  # only a shortcut: the claim reads the job itself
            log.debug("read-ahead failed", exc_info=True)

    def next_checkpoint(self) -> str | None:
        """The checkpoint of the job the next claim should take, if it was read."""
        return next((job.params.model for job in self._next.values()), None)

    def take(self, job_id: JobId) -> Job | None:
        """The copy read ahead if `job_id` was read; it is used once."""
        return self._next.pop(job_id, None)

    async def aclose(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


class Dispatcher:
    def __init__(
        self,
        *,
        queue: JobQueue,
        jobs: JobStore,
        events: EventBus,
        pool: BackendPool,
        slots: SlotBook,
        gateway: EngineGateway,
        client_ids: Mapping[BackendId, str],
        policy: DispatchPolicy,
        sent: Callable[[Job, BackendId], None] | None = None,
        refill_gap: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._queue = queue
        self._jobs = jobs
        self._events = events
        self._pool = pool
        self._slots = slots
        self._gateway = gateway
        self._client_ids = client_ids
        self._policy = policy
        self._sent = sent  # tells this process's listener what to expect, before the POST
        self._refill_gap = refill_gap  # observes slot-free → POST (a metric)
        self._clock = clock
        self._last_send: dict[BackendId, asyncio.Task[None]] = {}
        self._ahead = _ReadAhead(queue, jobs, min(len(pool.backends), _READ_AHEAD_MAX))
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set. Jobs are claimed and given a backend one at a time,
        in queue order; their reservations and sends then run side by side, but each backend
        receives its jobs in that order. Sends under way when `stop` is set complete before
        this returns."""
        self._stop = stop
        stopping = asyncio.ensure_future(self._wake_on(stop))
        try:
            async with asyncio.TaskGroup() as sends:
                while not stop.is_set():
                    try:
                        await self._next(sends, stop)
                    except Exception:
                        # Redis or the database away for a moment: try again shortly
                        log.exception("dispatcher step failed; retrying")
                        await _unless_stopped(asyncio.sleep(_RETRY_S), stop)
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            await self._ahead.aclose()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        """Wake the slot wait and the standbys when `stop` is set (cheaper than racing every
        wait against it)."""
        await stop.wait()
        self._pool.signal()
        self._pool.wake_standbys()

    async def _next(self, sends: asyncio.TaskGroup, stop: asyncio.Event) -> None:
        limit = self._pool.max_inflight
        if not self._pool.has_free_slot():
            backend = self._pool.take_standby_request()
            if backend is None:
                self._ahead.start()
                await self._pool.wait_for_slot(stop)  # resumes in one step when a slot frees
                return
            limit += 1  # the standby's slot, one over the limit until a job leaves
        else:
            backend = self._pool.pick(self._ahead.next_checkpoint())
            if backend is None:  # the free slot went meanwhile (its backend left, say)
                return
        taken = await self._queue.claim_into(backend, limit, self._policy.lease_s)
        self._pool.set_inflight(backend, taken.count)
        if taken.claim is None:
            if not taken.full:  # (when full, the count just applied tells the pool)
                self._pool.nothing_to_refill()
                await _unless_stopped(self._queue.wait_for_work(self._policy.idle_wait_s), stop)
            return
        claim = taken.claim
        job = self._ahead.take(claim.job_id) or await self._jobs.get(claim.job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            await self._free(backend, claim.job_id)
            await self._queue.ack(claim)  # a stale entry: the job moved on without the queue
            return
        standby = taken.count.inflight > self._pool.max_inflight
        if not standby:
            backend = await self._to_its_checkpoint(job, backend)
        # The send goes on in its own task, so that the next claim for another free slot
        # need not wait for it; each backend still gets its jobs in turn.
        before = self._last_send.get(backend)
        ticket = _Ticket(claim, job, backend, standby)
        task = sends.create_task(self._deliver_in_turn(ticket, before))
        self._last_send[backend] = task

    async def _to_its_checkpoint(self, job: Job, backend: BackendId) -> BackendId:
        """`backend`, whose slot the claim took before the job was known, unless it last ran
        another checkpoint and a free backend last ran the job's: then the slot moves there
        (loading a checkpoint costs far more than two round trips)."""
        model = job.params.model
        better = self._pool.candidates(model)
        if (
            self._pool.last_checkpoint(backend) == model
            or not better
            or self._pool.last_checkpoint(better[0]) != model
        ):
            return backend
        taken, count = await self._slots.reserve(
            better[0], job.id, self._pool.max_inflight, self._policy.lease_s
        )
        self._pool.set_inflight(better[0], count)
        if not taken:
            return backend
        await self._free(backend, job.id)
        return better[0]

    async def _deliver_in_turn(self, ticket: _Ticket, before: asyncio.Task[None] | None) -> None:
        try:
            await self._deliver(ticket, before)
        except Exception:
            # the lease or reconciliation brings the job back; the dispatcher carries on
            log.exception("dispatch of %s failed", ticket.job.id)

    async def _deliver(self, ticket: _Ticket, before: asyncio.Task[None] | None = None) -> None:
        job, backend = ticket.job, ticket.backend
        dispatched = await self._mark_dispatched(job, backend)
        if dispatched is None:  # cancelled meanwhile
            await self._free(backend, job.id)
            await self._queue.ack(ticket.claim)
            return
        if before is not None and not before.done():
            await asyncio.wait({before})  # the job claimed earlier reaches it first
        if ticket.standby:  # sent once a job leaves the backend, unless the hold ends first
            hold_s = self._policy.standby_hold_s
            if not await self._pool.wait_for_room(backend, job.id, hold_s, self._stop):
                await self._stand_down(ticket, dispatched)
                return
        # announced while the POST travels (the listener's "started" comes later): the
        # announcement's task starts once the POST is written, so the slot waits for nothing
        announced = asyncio.ensure_future(self._publish_dispatched(dispatched))
        try:
            await self._send(ticket.claim, dispatched, backend)
        finally:
            await announced

    async def _stand_down(self, ticket: _Ticket, dispatched: Job) -> None:
        """A job on standby that will not be sent: back to its old place, the attempt it was
        counted undone; a cancelled one (withdrawn, or cancelled meanwhile) is only let go."""
        backend = ticket.backend
        undone = await self._jobs.undo_dispatch(dispatched)
        await self._free(backend, dispatched.id)  # before the requeue wakes the dispatchers
        if undone is not None:
            log.info("job %s on standby for %s goes back to the queue", dispatched.id, backend)
            await self._requeue(ticket.job)
        await self._queue.ack(ticket.claim)

    async def _mark_dispatched(self, job: Job, backend: BackendId) -> Job | None:
        dispatched = await self._jobs.mark_dispatched(job, backend, self._clock())
        if dispatched is not None:
            return dispatched
        # `job` may be a copy read ahead that another dispatcher's attempt made stale
        current = await self._jobs.get(job.id)
        if current is None or current.status is not JobStatus.QUEUED:
            return None
        return await self._jobs.mark_dispatched(current, backend, self._clock())

    async def _send(self, claim: Claim, job: Job, backend: BackendId) -> None:
        if self._sent is not None:
            self._sent(job, backend)
        gap = self._pool.take_refill_gap(backend)
        if gap is not None and self._refill_gap is not None:
            self._refill_gap(gap)
        try:
            await self._gateway.post(backend, job.id, job.graph, self._client_ids[backend])
        except BackendRejected as exc:
            await self._free(backend, job.id)
            await self._fail(job, REJECTED, exc.message)
        except BackendUnreachable as exc:
            self._pool.back_off(backend, f"send failed: {exc}")
            await self._free(backend, job.id)
            await self._retry_or_fail(job, str(exc))
        except BackendUncertain as exc:
            # It may be inside the backend: keep it DISPATCHED there (slot held) and let
            # reconciliation look at the backend's queue and history before anything else.
            self._pool.back_off(backend, f"send uncertain: {exc}")
            await self._slots.confirm(backend, job.id)
        else:
            await self._slots.confirm(backend, job.id)
            self._pool.note_checkpoint(backend, job.params.model)
        await self._queue.ack(claim)

    async def _free(self, backend: BackendId, job_id: JobId) -> None:
        self._pool.set_inflight(backend, await self._slots.release(backend, job_id))

    async def _retry_or_fail(self, job: Job, reason: str) -> None:
        if job.attempts >= self._policy.max_attempts:
            await self._fail(job, UNREACHABLE, f"no backend took the job: {reason}")
            return
        if await self._jobs.back_to_queue(job.id) is not None:
            await self._requeue(job)

    async def _requeue(self, job: Job) -> None:
        await self._queue.requeue_announced(job.queue_entry, job_queued(job, self._clock(), None))

    async def _fail(self, job: Job, code: str, message: str) -> None:
        failed = await self._jobs.finish_unpaid(
            job.id, JobStatus.FAILED, JobError(code, message), self._clock()
        )
        if failed is None:
            return
        log.info("job %s failed at dispatch: %s", job.id, message)
        await self._events.publish(
            JobFailed(
                job_id=job.id,
                user_id=job.user_id,
                at=self._clock(),
                status=JobStatus.FAILED,
                code=code,
                message=message,
            )
        )

    async def _publish_dispatched(self, job: Job) -> None:
        """Tell the owner the job left the queue, and followers of waiting jobs that theirs
        moved up (the claim took it out of the queue)."""
        await self._events.publish(
            JobDispatched(
                job_id=job.id,
                user_id=job.user_id,
                at=self._clock(),
                status=JobStatus.DISPATCHED,
            )
        )
        await self._events.queue_moved()


async def _unless_stopped(waiting: Awaitable[object], stop: asyncio.Event) -> bool:
    """Await `waiting` unless `stop` is set first (then cancel it); True when it finished."""
    task = asyncio.ensure_future(waiting)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopper):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.cancelled():
        return False
    task.result()  # re-raise what the wait raised
    return True
