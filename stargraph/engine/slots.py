"""In-flight slots per backend in Redis, shared by every worker process.

One sorted set per backend holds the ids of the jobs that occupy its slots. A reservation
made before sending is scored with its expiry (server clock, ms), so the slot of a
dispatcher that dies before sending lapses by itself; once the backend holds the job the
score becomes +inf and only a release (or the sweeper's repair from the jobs table) frees
it. Each script runs atomically, so the check "fewer than max_inflight" and the taking of
the slot cannot interleave between processes. Releases are published so that every
dispatcher wakes, whichever process freed the slot. Every script also takes a number from one
shared counter, so each count it returns carries the order in which Redis ran it
(`SlotCount.version`). The keys share the queue's hash tag (`broker.keys.SlotKeys`), so
that the queue's `claim_into` leases a job and reserves its slot in one script.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from importlib.resources import files

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stargraph.broker.keys import SlotKeys
from stargraph.domain.backends import SlotCount, Withdrawn
from stargraph.domain.types import BackendId, JobId

log = logging.getLogger(__name__)

_LUA = files("stargraph.broker").joinpath("lua")
_LIB = _LUA.joinpath("slots_lib.lua").read_text()
_RESERVE, _RELEASE, _COUNTS = (
    _LIB + "\n" + _LUA.joinpath(f"slots_{name}.lua").read_text()
    for name in ("reserve", "release", "counts")
)


class RedisSlotBook:
    """`domain.backends.SlotBook` on Redis."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._names = SlotKeys.for_prefix(prefix)
        self.channel = self._names.channel
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)
        self._counts = redis.register_script(_COUNTS)

    def _key(self, backend: BackendId) -> str:
        return self._names.of(backend)

    def _keys(self, backends: Sequence[BackendId]) -> list[str]:
        return [self._names.version, *(self._key(b) for b in backends)]

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

    async def withdraw(self, job_id: JobId) -> None:
        await self._redis.publish(self._names.withdrawn, job_id)

    async def releases(self) -> AsyncIterator[tuple[BackendId, SlotCount] | Withdrawn]:
        """(backend, in-flight count) after each release anywhere, and each withdrawal;
        survives Redis restarts (what is published during an outage is lost: the sweeper's
        repair covers releases, and the listener interrupts a withdrawn job that starts)."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel, self._names.withdrawn)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    if _text(message["channel"]) == self._names.withdrawn:
                        yield Withdrawn(JobId(_text(message["data"])))
                    else:
                        yield _parse_release(message["data"])
            except RedisError as exc:
                log.warning("slot release feed interrupted: %s", exc)
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_release(data: bytes | str) -> tuple[BackendId, SlotCount]:
    count, version, backend = _text(data).split(" ", 2)
    return BackendId(backend), SlotCount(int(count), int(version))
