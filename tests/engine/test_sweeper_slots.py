"""Housekeeping frees the slots of jobs that left their backend, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from stargraph.domain.backends import BackendPool
from stargraph.domain.jobs import JobStatus
from stargraph.domain.types import BackendId
from stargraph.engine.slots import RedisSlotBook
from stargraph.engine.sweeper import RedisMarker, Sweeper
from tests.engine.factory import make_job
from tests.engine.harness import engine_rig

A, B = BackendId("http://gpu-a:8188"), BackendId("http://gpu-b:8188")


@pytest.mark.parametrize("others", [0, 248], ids=["two backends", "in the third hundred"])
async def test_slots_of_jobs_no_longer_inside_their_backend_are_freed(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path, others: int
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False) as rig:
        user = await rig.user("ann")
        inside, ended, moved, sending = [await rig.submit(make_job(user)) for _ in range(4)]
        for job, backend in ((inside, A), (ended, A), (moved, B)):
            assert await rig.jobs.mark_dispatched(job, backend, job.created_at)
        await rig.jobs.finish_unpaid(ended.id, JobStatus.CANCELLED, None, ended.created_at)
        slots = RedisSlotBook(redis, redis_prefix)
        for job in (inside, ended, moved):
            await slots.reserve(A, job.id, 5, 60)
            await slots.confirm(A, job.id)  # `moved` runs on B, yet holds a slot on A
        await slots.reserve(A, sending.id, 5, 60)  # a dispatcher between reserve and POST
        many = [BackendId(f"http://gpu-{i}:8188") for i in range(others)]
        pool = BackendPool([*many, A, B], max_inflight=5)
        marker = RedisMarker(redis, redis_prefix)
        await marker.was_lost()  # Redis kept its data: no rebuild in this pass
        sweeper = Sweeper(queue=rig.queue, jobs=rig.jobs, slots=slots, pool=pool, marker=marker)

        await sweeper.sweep_once()

        assert await slots.held([A, B]) == {A: [inside.id], B: []}
        counts = await slots.counts([A, B])
        assert {b: seen.inflight for b, seen in counts.items()} == {A: 2, B: 0}  # in flight stays
        assert [(s.url, s.inflight) for s in pool.snapshot()][-2:] == [(A, 2), (B, 0)]
