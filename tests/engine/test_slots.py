"""The shared slot book on real Redis: max_inflight holds across processes' races."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from stargraph.domain.backends import Withdrawn
from stargraph.domain.types import BackendId, JobId
from stargraph.engine.slots import RedisSlotBook
from tests.iterators import close

B = BackendId("http://127.0.0.1:1")


async def test_at_most_limit_slots_even_when_many_reserve_at_once(
    redis: Redis, redis_prefix: str
) -> None:
    books = [RedisSlotBook(redis, redis_prefix) for _ in range(4)]  # four "processes"
    results = await asyncio.gather(
        *(books[i % 4].reserve(B, JobId(f"job-{i}"), 2, 30) for i in range(20))
    )
    assert sum(taken for taken, _ in results) == 2
    assert (await books[0].counts([B]))[B].inflight == 2
    versions = [seen.version for _, seen in results]
    assert len(set(versions)) == len(versions)  # each answer has its own place in Redis' order


async def test_a_reservation_is_idempotent_and_a_release_frees_it(
    redis: Redis, redis_prefix: str
) -> None:
    book = RedisSlotBook(redis, redis_prefix)

    async def reserve(job: str) -> tuple[bool, int]:
        taken, seen = await book.reserve(B, JobId(job), 1, 30)
        return taken, seen.inflight

    assert await reserve("a") == (True, 1)
    assert await reserve("a") == (True, 1)
    assert await reserve("b") == (False, 1)
    await book.confirm(B, JobId("a"))
    assert await book.held([B]) == {B: [JobId("a")]}
    assert (await book.release(B, JobId("a"))).inflight == 0
    assert (await book.release(B, JobId("a"))).inflight == 0  # a second release changes nothing
    assert await reserve("b") == (True, 1)


async def test_versions_grow_in_redis_order_even_across_a_flush(
    redis: Redis, redis_prefix: str
) -> None:
    book = RedisSlotBook(redis, redis_prefix)
    _, first = await book.reserve(B, JobId("a"), 2, 30)
    second = await book.release(B, JobId("a"))
    assert second.version > first.version
    await redis.delete(*await redis.keys(f"*{redis_prefix}*"))  # as after a flush or a restart
    _, third = await book.reserve(B, JobId("b"), 2, 30)
    assert third.version > second.version


async def test_an_unconfirmed_reservation_lapses_but_a_confirmed_one_stays(
    redis: Redis, redis_prefix: str
) -> None:
    book = RedisSlotBook(redis, redis_prefix)
    await book.reserve(B, JobId("dead-dispatcher"), 2, 0.001)
    await book.reserve(B, JobId("sent"), 2, 0.001)
    await book.confirm(B, JobId("sent"))
    await asyncio.sleep(0.01)
    assert (await book.counts([B]))[B].inflight == 1
    assert await book.held([B]) == {B: [JobId("sent")]}


async def test_releases_reach_every_process(redis: Redis, redis_prefix: str) -> None:
    book = RedisSlotBook(redis, redis_prefix)
    other = RedisSlotBook(redis, redis_prefix)
    feed = other.releases()
    first = asyncio.ensure_future(anext(feed))
    for i in range(100):  # until the other's subscription is up
        await book.reserve(B, JobId(f"x{i}"), 2, 30)
        await book.release(B, JobId(f"x{i}"))
        done, _ = await asyncio.wait({first}, timeout=0.05)
        if done:
            break
    notice = first.result()
    assert not isinstance(notice, Withdrawn)
    backend, seen = notice
    assert (backend, seen.inflight) == (B, 0)
    await book.withdraw(JobId("cancelled"))
    assert await asyncio.wait_for(anext(feed), 5) == Withdrawn(JobId("cancelled"))
    await close(feed)
