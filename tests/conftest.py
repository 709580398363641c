"""Shared fixtures: real services where they run, embedded stand-ins elsewhere.

`STARGRAPH_TEST_SERVICES=required` (set by .ci/run) turns a missing Redis, PostgreSQL or
MariaDB into a failure instead of a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stargraph.broker.connection import connect_redis

REDIS_URL = os.environ.get("STARGRAPH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
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
def redis_prefix() -> str:
    """A key prefix of its own per test, so tests share one Redis server safely in parallel."""
    return f"t{uuid.uuid4().hex[:12]}"


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
