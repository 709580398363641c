"""Tests share one Redis server, each under a key prefix of its own: whoever chose a prefix
deletes its keys when done, so runs do not pile keys up on a developer's Redis."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from stargraph.broker.connection import connect_redis


async def forget_prefix(url: str | None, prefix: str) -> None:
    """Delete every key that holds `prefix` on the Redis at `url`. An in-process Redis
    (None or `memory://`) ends with its process, and a server that is down holds nothing to
    delete."""
    if url is None or url.startswith("memory://"):
        return
    client = connect_redis(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    except RedisConnectionError:
        return
    finally:
        await client.aclose()
