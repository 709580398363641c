"""Rate limits on Redis: a sliding window per key, counted atomically by one Lua script.

Used for submissions per minute per user and login attempts per username and per client
address. Times come from the Redis server's clock, so every process counts alike. Refused
attempts are not counted: a client that keeps hammering gets in again once old hits leave
the window. (The cap on queued jobs per user is read from the SQL jobs table, not here.)
"""

from __future__ import annotations

import math
from importlib.resources import files

from redis.asyncio import Redis

from stargraph.broker.pipelined import PipelinedScript
from stargraph.domain.errors import RateLimited
from stargraph.domain.types import unique_hex

_RATE_LIMIT_LUA = files("stargraph.broker").joinpath("lua/rate_limit.lua").read_text()


class RateLimiter:
    """At most `limit` hits per `window_s` seconds for each key, e.g. `submit:42`."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{{{prefix}}}:rate:"
        # every submission and login runs it: concurrent ones share round trips
        self._script = PipelinedScript(redis, _RATE_LIMIT_LUA, name="rate-limit")

    async def hit(self, key: str, limit: int, window_s: float) -> None:
        """Count one hit of `key`; raise RateLimited (nothing counted) when the window is full."""
        await self._run(key, limit, window_s, count=True)

    async def check(self, key: str, limit: int, window_s: float) -> None:
        """Raise RateLimited when a hit of `key` would be refused now; counts nothing."""
        await self._run(key, limit, window_s, count=False)

    async def reset(self, key: str) -> None:
        """Forget every hit of `key` (e.g. a username's failed logins after a success)."""
        await self._redis.delete(self._prefix + key)

    async def _run(self, key: str, limit: int, window_s: float, *, count: bool) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_s > 0")
        window_ms = max(1, math.ceil(window_s * 1000))
        wait_ms = await self._script(
            [self._prefix + key], [limit, window_ms, unique_hex(), "1" if count else "0"]
        )
        if int(wait_ms) > 0:
            retry_after_s = int(wait_ms) / 1000
            raise RateLimited(
                f"too many attempts; try again in {math.ceil(retry_after_s)} s",
                retry_after_s=retry_after_s,
            )
