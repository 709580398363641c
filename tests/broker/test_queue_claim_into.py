"""`claim_into`: the queue leases its first job and reserves a backend's slot for it in one
step, or does neither; on the in-process Redis and on a real server."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId
from stargraph.engine.slots import RedisSlotBook
from tests.broker.clients import second_client

GPU = BackendId("http://gpu-1:8188")


def job(name: str, user: int = 1) -> QueuedJob:
    return QueuedJob(JobId(name), UserId(user), Priority.NORMAL)


@pytest.fixture
def book(any_redis: Redis, redis_prefix: str) -> RedisSlotBook:
    return RedisSlotBook(any_redis, redis_prefix)


async def test_a_free_slot_takes_the_first_job_and_holds_a_slot_for_it(
    queue: RedisJobQueue, book: RedisSlotBook
) -> None:
    await queue.enqueue_many([job("a0"), job("b0", 2), job("a1")])
    _, before = await book.reserve(GPU, JobId("running"), 3, 30)

    taken = await queue.claim_into(GPU, 3, 60)

    assert taken.claim is not None and taken.claim.job_id == "a0" and not taken.full
    assert taken.count.inflight == 2 and taken.count.version > before.version
    assert (await book.counts([GPU]))[GPU].inflight == 2
    assert await queue.position(JobId("b0")) == 1
    await book.confirm(GPU, JobId("a0"))
    assert await book.held([GPU]) == {GPU: [JobId("a0")]}
    assert await queue.ack(taken.claim)


async def test_a_full_backend_claims_nothing_and_the_job_keeps_its_place(
    queue: RedisJobQueue, book: RedisSlotBook
) -> None:
    await queue.enqueue_many([job("a0"), job("b0", 2)])
    await book.reserve(GPU, JobId("running"), 1, 30)

    taken = await queue.claim_into(GPU, 1, 60)

    assert taken.claim is None and taken.full and taken.count.inflight == 1
    assert await queue.position(JobId("a0")) == 1
    await book.release(GPU, JobId("running"))
    again = await queue.claim_into(GPU, 1, 60)
    assert again.claim is not None and again.claim.job_id == "a0"


async def test_an_empty_queue_takes_no_slot(queue: RedisJobQueue, book: RedisSlotBook) -> None:
    taken = await queue.claim_into(GPU, 2, 60)

    assert taken.claim is None and not taken.full and taken.count.inflight == 0
    assert (await book.counts([GPU]))[GPU].inflight == 0


async def test_a_claim_never_sent_gives_back_its_job_and_its_slot_when_the_lease_ends(
    queue: RedisJobQueue, book: RedisSlotBook
) -> None:
    await queue.enqueue_many([job("a0"), job("a1")])
    taken = await queue.claim_into(GPU, 1, lease_s=0.001)  # its dispatcher died
    assert taken.claim is not None
    await asyncio.sleep(0.02)

    assert await queue.expire_leases() == [JobId("a0")]
    assert await queue.position(JobId("a0")) == 1
    assert (await book.counts([GPU]))[GPU].inflight == 0


async def test_racing_claims_fill_the_free_slots_exactly_once_each(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue, book: RedisSlotBook
) -> None:
    names = [f"j{i}" for i in range(40)]
    await queue.enqueue_many([job(n, i % 5 + 1) for i, n in enumerate(names)])
    clients = [second_client(any_redis) for _ in range(4)]
    queues = [RedisJobQueue(c, redis_prefix) for c in clients]  # four "dispatchers"
    try:
        results = await asyncio.gather(*(queues[i % 4].claim_into(GPU, 3, 60) for i in range(24)))
    finally:
        for q in queues:
            await q.aclose()
        for c in clients:
            await c.aclose()

    claimed = [r.claim.job_id for r in results if r.claim is not None]
    assert len(claimed) == len(set(claimed)) == 3
    assert sum(r.full for r in results) == 21
    assert (await book.counts([GPU]))[GPU].inflight == 3
    assert await queue.length() == 37
    versions = [r.count.version for r in results]
    assert len(set(versions)) == len(versions)  # each answer has its own place in Redis' order
