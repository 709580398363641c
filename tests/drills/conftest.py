"""Fixtures of the fault drills: a database (PostgreSQL when it runs), a private Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stargraph.broker.connection import connect_redis
from stargraph.store.db import init_db, migrate
from tests.conftest import SERVICES_REQUIRED, NewDatabase, _reachable
from tests.drills.redis_server import RedisServer


def preferred_engine() -> str:
    """PostgreSQL when it runs (always in CI): there a connection cut is a real
    `pg_terminate_backend`. Else SQLite."""
    return "postgres" if SERVICES_REQUIRED or _reachable("127.0.0.1", 5432) else "sqlite"


@pytest.fixture
async def drill_db(request: pytest.FixtureRequest, new_database: NewDatabase) -> str:
    """A fresh migrated database, opened for the test. Its engine: the test's indirect
    parameter ("sqlite" or "postgres") if it has one, else `preferred_engine()`."""
    url = await new_database(getattr(request, "param", None) or preferred_engine())
    await init_db(url)
    await migrate(url)
    return url


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A `redis-server` of this test's own, free to be restarted or flushed."""
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def private_redis_client(private_redis: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(private_redis.url)
    try:
        yield client
    finally:
        await client.aclose()
