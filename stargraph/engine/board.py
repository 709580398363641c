"""The backends board: each worker's view of its backends, readable by any API process.

Workers write their `BackendPool` snapshot on every housekeeping pass (entries expire, so a
backend no worker reports on reads as unhealthy); the in-flight counts come live from the
shared SlotBook. This is what the admin `backends` query and the queue ETA read when the
API runs apart from the workers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace

from redis.asyncio import Redis

from stargraph.domain.backends import BackendStatus, SlotBook
from stargraph.domain.types import BackendId


class BackendBoard:
    def __init__(self, redis: Redis, prefix: str, slots: SlotBook, ttl_s: float = 15.0) -> None:
        self._redis = redis
        self._key_prefix = f"{prefix}:{{engine}}:backend:"
        self._slots = slots
        self._ttl_ms = max(1, int(ttl_s * 1000))

    async def publish(self, snapshot: Sequence[BackendStatus]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in snapshot:
                pipe.set(self._key_prefix + status.url, json.dumps(asdict(status)), px=self._ttl_ms)
            await pipe.execute()

    async def read(self, backends: Sequence[BackendId], max_inflight: int) -> list[BackendStatus]:
        """Every configured backend, in order; one without a recent report is unhealthy."""
        if not backends:
            return []
        raw = await self._redis.mget([self._key_prefix + b for b in backends])
        counts = {b: seen.inflight for b, seen in (await self._slots.counts(backends)).items()}
        return [
            replace(_status(backend, data, max_inflight), inflight=counts.get(backend, 0))
            for backend, data in zip(backends, raw, strict=True)
        ]


def _status(backend: BackendId, data: bytes | str | None, max_inflight: int) -> BackendStatus:
    if data is None:
        return BackendStatus(
            url=backend,
            healthy=False,
            inflight=0,
            max_inflight=max_inflight,
            last_error="no worker reports on this backend",
            last_checkpoint=None,
            mean_run_s=None,
        )
    fields = json.loads(data)
    fields["url"] = BackendId(fields["url"])
    return BackendStatus(**fields)
