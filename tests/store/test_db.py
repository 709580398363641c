"""Database lifecycle: migrations on every engine, models in step with them, engines in sequence."""

from __future__ import annotations

import asyncio
import contextvars
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncmy.errors
import pytest
from tortoise import connections
from tortoise.exceptions import OperationalError
from tortoise.expressions import F

from stargraph.store import db as store_db
from stargraph.store.db import (
    APP,
    close_db,
    engine_of,
    init_db,
    is_deadlock,
    migrate,
    migrations_location,
    tortoise_config,
)
from stargraph.store.migrations import pending_changes
from stargraph.store.models import AccountRow, UserRow

TABLES = {"users", "access_tokens", "accounts", "ledger_entries", "holds", "jobs", "images"}


async def _tables() -> set[str]:
    conn = connections.get("default")
    queries = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type='table'",
        "postgres": "SELECT tablename AS name FROM pg_tables WHERE schemaname=current_schema()",
        "mysql": "SELECT table_name AS name FROM information_schema.tables"
        " WHERE table_schema=DATABASE()",
    }
    dialect = conn.schema_generator.DIALECT
    rows = await conn.execute_query_dict(queries[dialect])
    return {next(iter(r.values())) for r in rows}


def test_engine_and_location_follow_the_url() -> None:
    assert engine_of("sqlite://./x.db") == "sqlite"
    assert engine_of("postgres://u@h/db") == "postgres"
    assert engine_of("mysql://u:p@h/db") == "mysql"
    assert migrations_location("mysql://u:p@h/db").name == "mysql"
    with pytest.raises(ValueError):
        engine_of("oracle://x")


def test_config_names_the_models_and_aerich() -> None:
    config = tortoise_config("sqlite://:memory:")
    models = config["apps"]["models"]["models"]
    assert models == ["stargraph.store.models", "aerich.models"]
    assert config["connections"]["default"]["credentials"]["busy_timeout"] > 0


async def test_migrate_from_empty_to_head_is_idempotent(any_empty_db: str) -> None:
    applied = await migrate(any_empty_db)
    assert applied and applied[0].startswith("0_")
    assert await migrate(any_empty_db) == []
    await init_db(any_empty_db)
    assert await _tables() >= TABLES


async def test_the_open_holds_migration_counts_the_unsettled_holds(
    any_empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database from before `accounts.open_holds` gets the count of each user's unsettled
    holds, so its caps and its audit hold from the first submission after the upgrade."""
    engine = engine_of(any_empty_db)
    before = tmp_path / engine
    shutil.copytree(migrations_location(any_empty_db), before)
    for later in (before / APP).glob("[2-9]_*.py"):
        later.unlink()
    monkeypatch.setattr(store_db, "migrations_location", lambda url: before)
    await migrate(any_empty_db)
    monkeypatch.undo()
    await init_db(any_empty_db)
    try:
        conn = connections.get("default")
        for user in (1, 2, 3):
            await conn.execute_script(
                f"INSERT INTO users (id, username, username_key, password_hash, role,"
                f" created_at) VALUES ({user}, 'u{user}', 'u{user}', 'x', 'user',"
                f" '2026-01-01 00:00:00');"
                f" INSERT INTO accounts (user_id, available, frozen) VALUES ({user}, 0, 0);"
            )
        for job, user, settled in (("a", 1, 0), ("b", 1, 0), ("c", 1, 1), ("d", 2, 1)):
            await conn.execute_script(
                f"INSERT INTO holds (job_id, user_id, amount, settled, created_at) VALUES"
                f" ('{job}', {user}, 0, {'TRUE' if settled else 'FALSE'}, '2026-01-01 00:00:00')"
            )
        assert [v.split("_")[0] for v in await migrate(any_empty_db)] == ["2"]
        accounts = await AccountRow.all().order_by("user_id")
        assert [account.open_holds for account in accounts] == [2, 0, 0]
    finally:
        await close_db()


async def test_models_and_migrations_agree(any_db: str) -> None:
    assert await pending_changes(any_db) == []


async def test_a_model_change_shows_as_pending(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UserRow._meta.fields_map["role"], "index", True)
    assert any("INDEX" in sql and "role" in sql for sql in await pending_changes(db))


async def test_queries_work_from_a_task_with_its_own_context(db: str) -> None:
    """Under uvicorn, requests run in tasks that never saw the start-up's context."""

    async def create() -> int:
        user = await UserRow.create(username="ctx", username_key="ctx", password_hash="x")
        return user.id

    task = asyncio.get_running_loop().create_task(create(), context=contextvars.Context())
    assert await UserRow.get(id=await task)


async def _exercise_orm() -> None:
    """Insert, conditional update, select and delete: each uses cached dialect SQL."""
    name = uuid.uuid4().hex[:10]
    user = await UserRow.create(username=name, username_key=name, password_hash="x")
    await AccountRow.create(user=user, available=5)
    changed = await AccountRow.filter(user_id=user.id, available__gte=3).update(
        available=F("available") - 3
    )
    assert changed == 1
    assert (await AccountRow.get(user_id=user.id)).available == 2
    await user.delete()
    assert not await UserRow.exists(id=user.id)


async def test_engines_in_sequence_in_one_process(
    new_database: Callable[[str], Awaitable[str]],
) -> None:
    """Tortoise caches SQL text per table across databases; db.py must forget it on open."""
    for engine in ("sqlite", "postgres", "mariadb", "sqlite", "postgres"):
        url = await new_database(engine)
        await init_db(url)
        try:
            await migrate(url)
            await _exercise_orm()
        finally:
            await close_db()


def test_a_mariadb_deadlock_victim_is_recognised_and_nothing_else() -> None:
    victim = OperationalError(asyncmy.errors.OperationalError(1213, "Deadlock found"))
    timeout = OperationalError(asyncmy.errors.OperationalError(1205, "Lock wait timeout"))
    assert is_deadlock(victim)
    assert not is_deadlock(timeout)
    assert not is_deadlock(OperationalError("no such table: jobs"))
