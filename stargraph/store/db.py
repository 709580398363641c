"""Database lifecycle: Tortoise configuration, start-up and shutdown, migrations, test databases.

One database URL selects the engine: `sqlite://path`, `postgres://user@host/db` (asyncpg) or
`mysql://user:pw@host/db` (MariaDB/MySQL through asyncmy). aerich writes SQL for one dialect,
so each engine has its own committed migrations folder: `migrations/<engine>/models/`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncmy
import asyncpg
from aerich import Command
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext, get_current_context

from stargraph.store.checkpoints import WalCheckpointer

APP = "models"
MARIADB_DEADLOCK = 1213
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000

_checkpointer: WalCheckpointer | None = None  # the open SQLite database's, if any

_ENGINES = {
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
    "asyncpg": "postgres",
    "psycopg": "postgres",
    "mysql": "mysql",
}


def is_deadlock(exc: BaseException) -> bool:
    """Whether MariaDB (InnoDB) chose the statement as a deadlock victim and rolled back its
    transaction. Tortoise wraps the driver's error as the first argument of its own."""
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, asyncmy.errors.OperationalError) and cause.args[:1] == (
        MARIADB_DEADLOCK,
    )


def engine_of(url: str) -> str:
    """`sqlite`, `postgres` or `mysql` (MariaDB included) for a database URL."""
    scheme = urlparse(url).scheme
    try:
        return _ENGINES[scheme]
    except KeyError:
        raise ValueError(f"unsupported database URL scheme {scheme!r}") from None


def migrations_location(url: str) -> Path:
    """The aerich location for the URL's engine (aerich appends the app label)."""
    return MIGRATIONS_DIR / engine_of(url)


def tortoise_config(url: str) -> dict[str, Any]:
    """The Tortoise/aerich configuration for one database, with the app label `models`."""
    connection = expand_db_url(url)
    if engine_of(url) == "sqlite":
        # Several processes may share one SQLite file: wait for the write lock, do not fail.
        connection["credentials"].setdefault("busy_timeout", SQLITE_BUSY_TIMEOUT_MS)
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives a
        # crash of any process, and only a power cut can undo the last ones, each whole.
        connection["credentials"].setdefault("synchronous", "NORMAL")
        # No commit copies the log back: the process's WalCheckpointer does, in a thread.
        connection["credentials"].setdefault("wal_autocheckpoint", 0)
    elif engine_of(url) == "postgres":
        connection["credentials"]["reset"] = _keep_session
    return {
        "connections": {"default": connection},
        "apps": {
            APP: {
                "models": ["stargraph.store.models", "aerich.models"],
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def _keep_session(connection: asyncpg.Connection) -> None:
    """asyncpg's pool reset without its query: by default every release sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`, one round trip per
    statement run outside a transaction. Pooled connections hold no session state (no advisory
    locks, cursors, LISTEN or SET), and asyncpg still rolls back a transaction left open."""


def _forget_compiled_sql() -> None:
    """Drop Tortoise's per-table SQL cache.

    Tortoise caches each table's INSERT/DELETE/UPDATE text in a module-level dict keyed by
    (connection name, schema, table), not by dialect. After a database of another engine is
    opened under the same connection name in this process, the cached text would be sent to
    it (backticks to PostgreSQL). Clearing it on every open and close makes sequential
    databases of different engines safe in one process.
    """
    EXECUTOR_CACHE.clear()


async def init_db(url: str) -> None:
    """Open the database for the whole process; reopening switches to the new URL.

    The context is installed only as Tortoise's process-wide fallback (never in a ContextVar),
    so every task sees it, such as uvicorn's request tasks, and `close_db` fully undoes it.
    """
    global _checkpointer
    await close_db()
    if engine_of(url) == "sqlite":
        _sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)
    context = TortoiseContext()
    with context:  # current only while the apps are built
        await context.init(config=tortoise_config(url), _enable_global_fallback=True)
    _checkpointer = _wal_checkpointer(url)
    if _checkpointer is not None:
        _checkpointer.start()


def _wal_checkpointer(url: str) -> WalCheckpointer | None:
    """A SQLite file's checkpointer; None for another engine or an in-memory database."""
    if engine_of(url) != "sqlite":
        return None
    path = _sqlite_file(url)
    if str(path) == ":memory:":
        return None
    return WalCheckpointer(path, busy_timeout_s=SQLITE_BUSY_TIMEOUT_MS / 1000)


def _sqlite_file(url: str) -> Path:
    return Path(expand_db_url(url)["credentials"]["file_path"])


async def close_db() -> None:
    """Close the connections opened by `init_db`; a no-op when nothing is open."""
    global _checkpointer
    if _checkpointer is not None:
        await asyncio.to_thread(_checkpointer.stop)
        _checkpointer = None
    context = get_current_context()
    if context is not None:
        await context.close_connections()
    _forget_compiled_sql()


def is_open() -> bool:
    """Whether `init_db` has opened a database that is not closed yet."""
    context = get_current_context()
    return context is not None and context.inited


async def migrate(url: str) -> list[str]:
    """Apply the committed migrations of the URL's engine; returns the versions applied now.

    Idempotent. Uses the open database if `init_db` ran, else opens and closes its own.
    """
    opened = not is_open()
    if opened:
        await init_db(url)
    try:
        command = Command(tortoise_config(url), app=APP, location=str(migrations_location(url)))
        await command.init()
        return await command.upgrade(run_in_transaction=True)
    finally:
        if opened:
            await close_db()


async def create_database(url: str) -> None:
    """Create what the URL names: a server database, or on PostgreSQL with `?schema=NAME` that
    schema (and its database if missing). SQLite files create themselves."""
    engine, cred = engine_of(url), expand_db_url(url)["credentials"]
    if engine == "mysql":
        await _mysql(cred, f"CREATE DATABASE {_quoted(cred['database'], '`')}")
    elif engine == "postgres":
        if cred.get("schema"):
            await _ensure_postgres_database(cred)
            await _postgres(cred, cred["database"], f"CREATE SCHEMA {_quoted(cred['schema'])}")
        else:
            await _postgres(cred, "postgres", f"CREATE DATABASE {_quoted(cred['database'])}")


async def drop_database(url: str) -> None:
    """Drop what `create_database` made (closing other sessions on PostgreSQL), or the file."""
    engine, cred = engine_of(url), expand_db_url(url)["credentials"]
    if engine == "sqlite":
        path = Path(cred["file_path"])
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    elif engine == "mysql":
        await _mysql(cred, f"DROP DATABASE IF EXISTS {_quoted(cred['database'], '`')}")
    elif cred.get("schema"):
        drop = f"DROP SCHEMA IF EXISTS {_quoted(cred['schema'])} CASCADE"
        await _postgres(cred, cred["database"], drop)
    else:
        drop = f"DROP DATABASE IF EXISTS {_quoted(cred['database'])} WITH (FORCE)"
        await _postgres(cred, "postgres", drop)


def _quoted(name: str | None, quote: str = '"') -> str:
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing database or schema name {name!r}")
    return f"{quote}{name}{quote}"


async def _ensure_postgres_database(cred: dict[str, Any]) -> None:
    """Create the database unless it exists; an advisory lock serialises concurrent callers
    (PostgreSQL refuses two CREATE DATABASE copying template1 at once)."""
    conn = await _postgres_connect(cred, "postgres")
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext('stargraph:create_database'))")
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", cred["database"])
        if not exists:
            await conn.execute(f"CREATE DATABASE {_quoted(cred['database'])}")
    finally:
        await conn.close()  # also releases the lock


async def _postgres_connect(cred: dict[str, Any], database: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=cred["host"], port=cred["port"], user=cred["user"],
        password=cred["password"], database=database,
    )  # fmt: skip


async def _postgres(cred: dict[str, Any], database: str, statement: str) -> None:
    conn = await _postgres_connect(cred, database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _mysql(cred: dict[str, Any], statement: str) -> None:
    conn = await asyncmy.connect(
        host=cred["host"], port=cred["port"], user=cred["user"], password=cred["password"] or ""
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(statement)
    finally:
        await conn.ensure_closed()
