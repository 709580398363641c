"""Shared fixtures: real services where they run, embedded stand-ins elsewhere.

`STARGRAPH_TEST_SERVICES=required` (set by .ci/run) turns a missing Redis, PostgreSQL or
MariaDB into a failure instead of a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from stargraph.broker.connection import connect_redis
from stargraph.store.db import close_db, create_database, drop_database, init_db, migrate
from tests.redis_cleanup import forget_prefix

REDIS_URL = os.environ.get("STARGRAPH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("STARGRAPH_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
MARIADB_URL = os.environ.get("STARGRAPH_TEST_MARIADB_URL", "mysql://root:@127.0.0.1:3306")
SERVICES_REQUIRED = os.environ.get("STARGRAPH_TEST_SERVICES", "auto") == "required"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) when a server the test needs is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} not reachable on {host}:{port}"
    if SERVICES_REQUIRED:
        pytest.fail(message + " (STARGRAPH_TEST_SERVICES=required)")
    pytest.skip(message)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of its own per test, so tests share one Redis server safely in parallel;
    afterwards every key on the server that holds it is deleted."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    await forget_prefix(REDIS_URL, prefix)


@pytest.fixture(params=["memory", "server"])
async def any_redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """Both kinds of Redis StarGraph runs on: in-process and a real server."""
    if request.param == "server":
        need_service("Redis", "127.0.0.1", 6379)
        client = connect_redis(REDIS_URL)
    else:
        client = connect_redis(f"memory://{uuid.uuid4().hex}")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A real Redis server when one runs (always in CI), else the in-process one."""
    if SERVICES_REQUIRED or _reachable("127.0.0.1", 6379):
        need_service("Redis", "127.0.0.1", 6379)
        client = connect_redis(REDIS_URL)
    else:
        client = connect_redis(f"memory://{uuid.uuid4().hex}")
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------- SQL databases

DB_ENGINES = ["sqlite", "postgres", "mariadb"]
_SERVERS = {"postgres": ("PostgreSQL", POSTGRES_URL), "mariadb": ("MariaDB", MARIADB_URL)}

NewDatabase = Callable[[str], Awaitable[str]]


def _address(url: str) -> tuple[str, int]:
    parsed = urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 0


def _server_url(engine: str, name: str) -> str:
    """PostgreSQL: a schema of its own in one shared test database (creating a PostgreSQL
    database costs most of a second; a schema, milliseconds). MariaDB: a database."""
    label, base = _SERVERS[engine]
    need_service(label, *_address(base))
    if engine == "postgres":
        return f"{base.rstrip('/')}/sg_tests?schema={name}"
    return f"{base.rstrip('/')}/{name}"


@pytest.fixture
async def new_database(tmp_path: Path) -> AsyncIterator[NewDatabase]:
    """Factory: `await new_database(engine)` ("sqlite", "postgres" or "mariadb") returns the URL
    of a new, empty, uniquely named database; Tortoise is closed and each one dropped after."""
    made: list[str] = []

    async def make(engine: str) -> str:
        name = f"sg_test_{uuid.uuid4().hex[:16]}"
        if engine == "sqlite":
            url = f"sqlite://{tmp_path / name}.db"
        else:
            url = _server_url(engine, name)
            await create_database(url)
        made.append(url)
        return url

    try:
        yield make
    finally:
        await close_db()
        for url in made:
            await drop_database(url)


@pytest.fixture(params=DB_ENGINES)
async def any_empty_db(request: pytest.FixtureRequest, new_database: NewDatabase) -> str:
    """URL of an empty database on each engine; nothing opened."""
    return await new_database(request.param)


async def _open_migrated(url: str) -> str:
    await init_db(url)
    await migrate(url)
    return url


@pytest.fixture(params=DB_ENGINES)
async def any_db(request: pytest.FixtureRequest, new_database: NewDatabase) -> str:
    """A fresh migrated database on each engine, opened for the test; yields its URL."""
    return await _open_migrated(await new_database(request.param))


@pytest.fixture
async def db(new_database: NewDatabase) -> str:
    """A fresh migrated SQLite database in tmp_path, opened for the test; yields its URL."""
    return await _open_migrated(await new_database("sqlite"))
