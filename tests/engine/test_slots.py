"""The shared slot book on real Redis: max_inflight holds across processes' races."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from stargraph.domain.types import BackendId, JobId
from stargraph.engine.slots import RedisSlotBook

B = BackendId("http://127.0.0.1:1")


async def test_at_most_limit_slots_even_when_many_reserve_at_once(
    redis: Redis, redis_prefix: str
) -> None:
    books = [RedisSlotBook(redis, redis_prefix) for _ in range(4)]  # four "processes"
    results = await asyncio.gather(
        *(books[i % 4].reserve(B, JobId(f"job-{i}"), 2, 30) for i in range(20))
    )
    assert sum(taken for taken, _ in results) == 2
    assert (await books[0].counts([B]))[B] == 2


async def test_a_reservation_is_idempotent_and_a_release_frees_it(
    redis: Redis, redis_prefix: str
) -> None:
    book = RedisSlotBook(redis, redis_prefix)
    assert await book.reserve(B, JobId("a"), 1, 30) == (True, 1)
    assert await book.reserve(B, JobId("a"), 1, 30) == (True, 1)
    assert await book.reserve(B, JobId("b"), 1, 30) == (False, 1)
    await book.confirm(B, JobId("a"))
    assert await book.held([B]) == {B: [JobId("a")]}
    assert await book.release(B, JobId("a")) == 0
    assert await book.release(B, JobId("a")) == 0  # a second release changes nothing
    assert await book.reserve(B, JobId("b"), 1, 30) == (True, 1)


async def test_an_unconfirmed_reservation_lapses_but_a_confirmed_one_stays(
    redis: Redis, redis_prefix: str
) -> None:
    book = RedisSlotBook(redis, redis_prefix)
    await book.reserve(B, JobId("dead-dispatcher"), 2, 0.001)
    await book.reserve(B, JobId("sent"), 2, 0.001)
    await book.confirm(B, JobId("sent"))
    await asyncio.sleep(0.01)
    assert (await book.counts([B]))[B] == 1
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
    assert first.result() == (B, 0)
    await feed.aclose()
