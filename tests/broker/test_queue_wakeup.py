"""wait_for_work: a dispatcher in any process wakes when work arrives (both kinds of Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId
from tests.broker.clients import second_client

GPU = BackendId("http://gpu-1:8188")


def job(name: str, user: int = 1) -> QueuedJob:
    return QueuedJob(JobId(name), UserId(user), Priority.NORMAL)


@pytest.fixture
async def elsewhere(any_redis: Redis, redis_prefix: str) -> AsyncIterator[RedisJobQueue]:
    """The same queue seen from another client, as another process would."""
    client = second_client(any_redis)
    q = RedisJobQueue(client, redis_prefix)
    try:
        yield q
    finally:
        await q.aclose()
        await client.aclose()


async def test_a_waiter_wakes_when_another_client_enqueues(
    queue: RedisJobQueue, elsewhere: RedisJobQueue
) -> None:
    assert await queue.wait_for_work(10)  # the first call subscribes: "there may be work"
    waiters = [asyncio.create_task(queue.wait_for_work(10)) for _ in range(3)]
    await asyncio.sleep(0)

    await elsewhere.enqueue(job("a0"))

    assert await asyncio.gather(*waiters) == [True, True, True]
    claim = await queue.claim(GPU, 60)
    assert claim is not None and claim.job_id == "a0"


async def test_a_waiter_wakes_when_another_client_requeues(
    queue: RedisJobQueue, elsewhere: RedisJobQueue
) -> None:
    await elsewhere.enqueue(job("a0"))
    claim = await elsewhere.claim(GPU, 60)
    assert claim is not None
    assert await queue.wait_for_work(10)
    assert not await queue.wait_for_work(0.01)  # drained: nothing new
    waiter = asyncio.create_task(queue.wait_for_work(10))
    await asyncio.sleep(0)

    await elsewhere.requeue(claim.job_id)

    assert await waiter


async def test_a_signal_while_nobody_waits_is_kept_and_quiet_times_out(
    queue: RedisJobQueue,
) -> None:
    assert await queue.wait_for_work(10)
    assert not await queue.wait_for_work(0.01)

    await queue.enqueue(job("a0"))
    claim = await queue.claim(GPU, lease_s=0)
    assert claim is not None

    assert await queue.wait_for_work(10)  # the enqueue, received while nobody waited
    assert await queue.expire_leases() == [claim.job_id]
    assert await queue.wait_for_work(10)  # the lease expiry put work back


async def test_a_claim_loop_takes_every_job_enqueued_elsewhere(
    queue: RedisJobQueue, elsewhere: RedisJobQueue
) -> None:
    taken: list[str] = []
    timeouts = 0

    async def dispatcher() -> None:
        nonlocal timeouts
        while len(taken) < 20:
            claim = await queue.claim(GPU, 60)
            if claim is not None:
                taken.append(claim.job_id)
            elif not await queue.wait_for_work(10):
                timeouts += 1

    async def produce() -> None:
        for i in range(20):
            await elsewhere.enqueue(job(f"p{i}", i % 3))
            await asyncio.sleep(0.002 * (i % 3))

    await asyncio.gather(dispatcher(), produce())

    assert sorted(taken) == sorted(f"p{i}" for i in range(20))
    assert timeouts == 0
