"""Redis connections: a real server from a URL, or an in-process Redis when none is configured."""

from __future__ import annotations

import fakeredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

MAX_CONNECTIONS = 100  # per client (one process has two: commands and pub/sub)

_IN_PROCESS_SERVERS: dict[str, fakeredis.FakeServer] = {}


def connect_redis(url: str | None, *, blocking: bool = False) -> Redis:
    """A client for `url`, or for the process's in-process Redis when `url` is None.

    `blocking` clients carry no socket timeout, so blocking reads (pub/sub, XREAD BLOCK,
    BZPOPMIN) are not cut short and re-sent by redis-py's retry logic.
    """
    if url is None or url.startswith("memory://"):
        name = url or "memory://default"
        server = _IN_PROCESS_SERVERS.setdefault(name, fakeredis.FakeServer())
        pool = ConnectionPool(
            connection_class=fakeredis.aioredis.FakeAsyncRedisConnection, server=server
        )
        return Redis(connection_pool=pool, decode_responses=False)
    timeout = None if blocking else 10.0
    # A burst of more concurrent commands than connections (a worker's thousand listeners
    # publishing at once) waits for a free connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=10.0,
        socket_timeout=timeout,
        socket_connect_timeout=5.0,
        health_check_interval=15,
    )
    return Redis.from_pool(pool)
