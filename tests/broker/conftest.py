"""The queue fixture shared by the queue's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stargraph.broker.events import RedisEventBus
from stargraph.broker.queue import RedisJobQueue


@pytest.fixture
async def queue(any_redis: Redis, redis_prefix: str) -> AsyncIterator[RedisJobQueue]:
    """A queue of the test's own on both kinds of Redis, with the event bus it announces
    through (`redis_prefix` deletes its keys afterwards)."""
    q = RedisJobQueue(
        any_redis, redis_prefix, events=RedisEventBus(any_redis, any_redis, redis_prefix)
    )
    try:
        yield q
    finally:
        await q.aclose()
