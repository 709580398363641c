"""Translation cache in Redis: one string key per (translator version, normalised text).

Keys are `PREFIX:tr:<sha256>` with a TTL. A cache that cannot be reached is a miss, not
a failure: translation goes on without it.
"""

from __future__ import annotations

import hashlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RedisTranslationCache:
    """Implements `domain.translation.TranslationCache`."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: int = 30 * 24 * 3600) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    def key(self, namespace: str, text: str) -> str:
        digest = hashlib.sha256(f"{namespace}\x00{text}".encode()).hexdigest()
        return f"{self._prefix}:tr:{digest}"

    async def get(self, namespace: str, text: str) -> str | None:
        try:
            value = await self._redis.get(self.key(namespace, text))
        except RedisError as exc:
            log.warning("translation cache read failed: %s", exc)
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def put(self, namespace: str, text: str, translation: str) -> None:
        try:
            await self._redis.set(self.key(namespace, text), translation.encode(), ex=self._ttl_s)
        except RedisError as exc:
            log.warning("translation cache write failed: %s", exc)
