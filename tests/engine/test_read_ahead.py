"""While every slot is busy the dispatcher reads the next job ahead, so that a freed slot
goes straight to its POST; a copy read ahead that went stale is never trusted blindly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from redis.asyncio import Redis

from stargraph.domain.backends import BackendPool
from stargraph.domain.dispatch import Dispatcher, DispatchPolicy
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.types import BackendId, JobId
from stargraph.engine.slots import RedisSlotBook
from stargraph.store.jobs import TortoiseJobStore
from tests.engine.counts import fresh
from tests.engine.factory import CHECKPOINT, make_job
from tests.engine.harness import Rig, engine_rig


class ReadsSeen(TortoiseJobStore):
    """The real store, noting which jobs were read."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig.ledger)
        self.reads: list[JobId] = []

    async def get(self, job_id: JobId) -> Job | None:
        self.reads.append(job_id)
        return await super().get(job_id)


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


def full_pool(rig: Rig) -> BackendPool:
    pool = BackendPool(rig.backends, max_inflight=1)
    for backend in rig.backends:
        pool.mark_up(backend)
        pool.set_inflight(backend, fresh(1))  # every slot busy
    return pool


def dispatcher(
    rig: Rig,
    jobs: TortoiseJobStore,
    pool: BackendPool,
    sent: list[Job],
    slots: RedisSlotBook | None = None,
) -> Dispatcher:
    return Dispatcher(
        queue=rig.queue,
        jobs=jobs,
        events=rig.events,
        pool=pool,
        slots=slots or RedisSlotBook(rig.redis, rig.prefix),
        gateway=rig.gateway,
        client_ids={b: "read-ahead-test" for b in rig.backends},
        policy=DispatchPolicy(lease_s=5.0, max_attempts=3),
        sent=lambda job, _backend: sent.append(job),
    )


async def run_until_dispatched(
    rig: Rig, job: Job, meanwhile: Callable[[], Awaitable[None]] | None = None
) -> tuple[Job, list[JobId]]:
    """Start the dispatcher with every slot busy; once it has read `job` ahead, run
    `meanwhile` and free a slot. Returns the job as the dispatcher sent it, and the jobs
    read after the slot was freed."""
    sent: list[Job] = []
    jobs, pool, stop = ReadsSeen(rig), full_pool(rig), asyncio.Event()
    running = asyncio.create_task(dispatcher(rig, jobs, pool, sent).run(stop))
    try:
        await until(lambda: job.id in jobs.reads)
        if meanwhile is not None:
            await meanwhile()
        jobs.reads.clear()
        pool.set_inflight(rig.backends[0], fresh(0))
        await rig.wait_status(job.id, JobStatus.DISPATCHED, JobStatus.RUNNING)
        await until(lambda: bool(sent))
        return sent[0], list(jobs.reads)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def test_a_freed_slot_sends_the_job_read_ahead_without_reading_it_again(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False) as rig:
        job = await rig.submit(make_job(await rig.user("ann")))

        dispatched, reads_after_free = await run_until_dispatched(rig, job)

        assert job.id not in reads_after_free
        assert (dispatched.backend, dispatched.attempts) == (rig.backends[0], 1)
        await until(lambda: any(r.prompt_id == job.id for r in rig.sims[0].simulator.records))


async def test_a_copy_made_stale_by_another_dispatcher_counts_attempts_from_the_store(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False) as rig:
        job = await rig.submit(make_job(await rig.user("ann")))

        async def sent_elsewhere_and_requeued() -> None:
            # another dispatcher sent it and the backend refused the connection: the job is
            # back in the queue with 1 attempt, while the copy read ahead still says 0
            assert await rig.jobs.mark_dispatched(job, rig.backends[0], job.created_at)
            assert await rig.jobs.back_to_queue(job.id) is not None

        dispatched, _ = await run_until_dispatched(rig, job, sent_elsewhere_and_requeued)

        assert dispatched.attempts == 2
        stored = await rig.jobs.get(job.id)
        assert stored is not None and stored.attempts == 2


class FirstUpdateHeld(ReadsSeen):
    """The real store, whose first QUEUED → DISPATCHED waits until `go` is set."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig)
        self.go = asyncio.Event()
        self.asked: list[JobId] = []

    async def mark_dispatched(self, job: Job, backend: BackendId, at: datetime) -> Job | None:
        self.asked.append(job.id)
        if len(self.asked) == 1:
            await self.go.wait()
        return await super().mark_dispatched(job, backend, at)


async def test_slots_freeing_together_are_refilled_side_by_side(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, backends=2, start=False) as rig:
        user = await rig.user("ann")
        first = await rig.submit(make_job(user))
        second = await rig.submit(make_job(user))
        sent: list[Job] = []
        jobs, pool, stop = FirstUpdateHeld(rig), full_pool(rig), asyncio.Event()
        running = asyncio.create_task(dispatcher(rig, jobs, pool, sent).run(stop))
        try:
            await until(lambda: {first.id, second.id} <= set(jobs.reads))
            jobs.reads.clear()
            for backend in rig.backends:  # both backends end a job at the same moment
                pool.set_inflight(backend, fresh(0))

            # the second job is claimed into its slot and sent while the first one's
            # UPDATE is still held up
            await until(lambda: [job.id for job in sent] == [second.id])
            assert jobs.asked == [first.id, second.id]
            jobs.go.set()

            await until(lambda: len(sent) == 2)
            assert {job.backend for job in sent} == set(rig.backends)
            assert jobs.reads == []  # both were read ahead
        finally:
            stop.set()
            jobs.go.set()
            await asyncio.wait_for(running, 10)


async def test_a_job_claimed_before_it_was_read_goes_where_its_checkpoint_is_loaded(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, backends=2, start=False) as rig:
        loaded, other = rig.backends
        pool = BackendPool(rig.backends, max_inflight=2)
        for backend in rig.backends:
            pool.mark_up(backend)
        pool.note_checkpoint(loaded, CHECKPOINT)
        pool.note_checkpoint(other, "another.safetensors")
        pool.set_inflight(loaded, fresh(1))  # busier: a pick with no job in view goes to `other`
        sent: list[Job] = []
        stop = asyncio.Event()
        running = asyncio.create_task(dispatcher(rig, ReadsSeen(rig), pool, sent).run(stop))
        try:
            job = await rig.submit(make_job(await rig.user("ann")))  # nothing was read ahead
            await until(lambda: bool(sent))
            assert sent[0].id == job.id and sent[0].backend == loaded
            counts = await RedisSlotBook(rig.redis, rig.prefix).counts(rig.backends)
            assert (counts[loaded].inflight, counts[other].inflight) == (1, 0)
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
