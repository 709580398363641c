"""Cutting a process off its SQL database for a moment.

PostgreSQL: the server ends the process's sessions (`pg_terminate_backend`), found by the
`application_name` its database URL carries; every query under way fails and the pool must
open new connections. SQLite has no server to cut a connection at, so the equivalent is an
outage: another connection holds the file's exclusive lock longer than the busy timeout, so
every read and write of the process fails with "database is locked" until it is released.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
from tortoise.backends.base.config_generator import expand_db_url

from stargraph.store.db import SQLITE_BUSY_TIMEOUT_MS, engine_of


def with_application_name(url: str, name: str) -> str:
    """The PostgreSQL URL with `application_name` set, so its sessions can be found."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


async def terminate_postgres_sessions(url: str, application_name: str) -> int:
    """End every session of `application_name`; how many were ended."""
    cred = expand_db_url(url)["credentials"]
    conn = await asyncpg.connect(
        host=cred["host"], port=cred["port"], user=cred["user"],
        password=cred["password"], database=cred["database"],
    )  # fmt: skip
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                application_name,
            )
        )
    finally:
        await conn.close()


def _hold_sqlite_lock(path: Path, seconds: float) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def sqlite_outage(url: str, extra_s: float = 1.0) -> None:
    """Lock the SQLite file for longer than the busy timeout (only this task waits)."""
    path = Path(expand_db_url(url)["credentials"]["file_path"])
    await asyncio.to_thread(_hold_sqlite_lock, path, SQLITE_BUSY_TIMEOUT_MS / 1000 + extra_s)


async def cut_database(url: str, application_name: str) -> str:
    """Cut the process whose sessions carry `application_name` off `url`; what was done."""
    if engine_of(url) == "postgres":
        ended = await terminate_postgres_sessions(url, application_name)
        return f"terminated {ended} PostgreSQL session(s)"
    await sqlite_outage(url)
    return "held the SQLite file's exclusive lock past the busy timeout"
