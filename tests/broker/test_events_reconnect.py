"""The event listener survives losing its Redis connection (real server only): followers,
live or resuming, lose nothing that was published while it was away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from stargraph.broker.events import RedisEventBus
from stargraph.domain.events import JobEvent, JobProgress
from stargraph.domain.jobs import JobStatus
from stargraph.domain.types import JobId, UserId
from tests.iterators import close

ALICE = UserId(7)


def progress(step: int) -> JobProgress:
    return JobProgress(
        job_id=JobId("job"),
        user_id=ALICE,
        at=datetime.now(UTC),
        status=JobStatus.RUNNING,
        step=step,
        max_steps=1000,
    )


async def take(events: AsyncIterator[JobEvent], n: int) -> list[JobEvent]:
    got: list[JobEvent] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            got.append(await anext(events))
    return got


async def kill_connections_named(redis: Redis, name: str) -> int:
    """CLIENT KILL the connections of this test's listener only (other tests run alongside)."""
    ids = [c["id"] for c in await redis.client_list() if c.get("name") == name]
    for client_id in ids:
        await redis.client_kill_filter(_id=client_id)
    return len(ids)


async def test_followers_lose_nothing_when_the_listener_connection_is_killed(
    redis: Redis, redis_prefix: str
) -> None:
    kwargs = redis.connection_pool.connection_kwargs
    if "server" in kwargs:
        pytest.skip("needs a real Redis server (none is running here)")
    name = f"{redis_prefix}-listener"
    listen = Redis(host=kwargs["host"], port=kwargs["port"], socket_timeout=None, client_name=name)
    async with RedisEventBus(redis, listen, redis_prefix) as bus:
        start = await bus.last_cursor(ALICE)
        live = bus.follow_user(ALICE, after=start)
        before = [await bus.publish(progress(step)) for step in range(5)]
        assert [e.cursor for e in await take(live, 5)] == before

        assert await kill_connections_named(redis, name) == 1
        during = [await bus.publish(progress(step)) for step in range(5, 25)]

        assert [e.cursor for e in await take(live, 20)] == during  # none lost, none twice
        assert bus.subscriptions >= 2  # it did reconnect and subscribe again
        after = [await bus.publish(progress(step)) for step in range(25, 30)]
        assert [e.cursor for e in await take(live, 5)] == after
        resumed = bus.follow_user(ALICE, after=before[-1])
        assert [e.cursor for e in await take(resumed, 25)] == during + after
        await close(resumed)
        await close(live)
    await listen.aclose()
