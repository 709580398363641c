"""In-flight slots per backend in Redis, shared by every worker process.

One sorted set per backend holds the ids of the jobs that occupy its slots. A reservation
made before sending is scored with its expiry (server clock, ms), so the slot of a
dispatcher that dies before sending lapses by itself; once the backend holds the job the
score becomes +inf and only a release (or the sweeper's repair from the jobs table) frees
it. Each script runs atomically, so the check "fewer than max_inflight" and the taking of
the slot cannot interleave between processes. Releases are published so that every
dispatcher wakes, whichever process freed the slot. Every script also takes a number from one
shared counter, so each count it returns carries the order in which Redis ran it
(`SlotCount.version`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stargraph.domain.backends import SlotCount
from stargraph.domain.types import BackendId, JobId

log = logging.getLogger(__name__)

# KEYS[1] is always the version counter. It starts from the server clock in µs, so that after
# Redis is flushed or restarted the versions still exceed every one handed out before.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
end
local version = redis.call('INCR', KEYS[1])
"""

# KEYS[2] the backend's slots; ARGV[1] job id, ARGV[2] limit, ARGV[3] ttl in ms
_RESERVE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return {1, redis.call('ZCARD', KEYS[2]), version}
end
local n = redis.call('ZCARD', KEYS[2])
if n >= tonumber(ARGV[2]) then
  return {0, n, version}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return {1, n + 1, version}
"""
)

# KEYS[2] the backend's slots; ARGV[1] job id, ARGV[2] channel, ARGV[3] backend
_RELEASE = (
    _NOW_MS
    + """
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local n = redis.call('ZCARD', KEYS[2])
if removed == 1 then
  redis.call('PUBLISH', ARGV[2], string.format('%d %d %s', n, version, ARGV[3]))
end
return {n, version}
"""
)

# KEYS[i + 1] slots of backend i; returns the version, then the count of each backend
_COUNTS = (
    _NOW_MS
    + """
local out = {version}
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  out[i] = redis.call('ZCARD', KEYS[i])
end
return out
"""
)


class RedisSlotBook:
    """`domain.backends.SlotBook` on Redis."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        # one hash tag for every slots key, so the multi-key count script runs on a cluster
        self._key_prefix = f"{prefix}:{{engine}}:slots:"
        self.channel = f"{prefix}:{{engine}}:slot-freed"
        self._version_key = f"{prefix}:{{engine}}:slots-version"
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)
        self._counts = redis.register_script(_COUNTS)

    def _key(self, backend: BackendId) -> str:
        return self._key_prefix + backend

    def _keys(self, backends: Sequence[BackendId]) -> list[str]:
        return [self._version_key, *(self._key(b) for b in backends)]

    async def reserve(
        self, backend: BackendId, job_id: JobId, limit: int, ttl_s: float
    ) -> tuple[bool, SlotCount]:
        taken, count, version = await self._reserve(
            keys=self._keys([backend]), args=[job_id, limit, max(1, int(ttl_s * 1000))]
        )
        return bool(taken), SlotCount(int(count), int(version))

    async def confirm(self, backend: BackendId, job_id: JobId) -> None:
        await self._redis.zadd(self._key(backend), {job_id: float("inf")})

    async def release(self, backend: BackendId, job_id: JobId) -> SlotCount:
        count, version = await self._release(
            keys=self._keys([backend]), args=[job_id, self.channel, backend]
        )
        return SlotCount(int(count), int(version))

    async def counts(self, backends: Sequence[BackendId]) -> dict[BackendId, SlotCount]:
        if not backends:
            return {}
        version, *found = await self._counts(keys=self._keys(backends), args=[])
        return {b: SlotCount(int(n), int(version)) for b, n in zip(backends, found, strict=True)}

    async def held(self, backends: Sequence[BackendId]) -> dict[BackendId, list[JobId]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for backend in backends:
                pipe.zrangebyscore(self._key(backend), "+inf", "+inf")
            found = await pipe.execute()
        return {
            backend: [JobId(m.decode() if isinstance(m, bytes) else m) for m in members]
            for backend, members in zip(backends, found, strict=True)
        }

    async def releases(self) -> AsyncIterator[tuple[BackendId, SlotCount]]:
        """(backend, in-flight count) after each release anywhere; survives Redis restarts
        (releases published during an outage are lost; the sweeper's repair covers them)."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        yield _parse_release(message["data"])
            except RedisError as exc:
                log.warning("slot release feed interrupted: %s", exc)
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _parse_release(data: bytes | str) -> tuple[BackendId, SlotCount]:
    text = data.decode() if isinstance(data, bytes) else data
    count, version, backend = text.split(" ", 2)
    return BackendId(backend), SlotCount(int(count), int(version))
