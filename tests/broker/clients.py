"""Redis clients for the queue's tests."""

from __future__ import annotations

from redis.asyncio import ConnectionPool, Redis


def second_client(redis: Redis) -> Redis:
    """Another client (own connections) on the same server, in-process or real."""
    pool = redis.connection_pool
    return Redis.from_pool(ConnectionPool(pool.connection_class, **pool.connection_kwargs))
