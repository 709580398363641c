"""Developer tools for the per-engine aerich migrations: write new ones, find pending changes.

After changing `store/models.py`, run `stargraph makemigrations NAME`: for each engine it
creates a scratch database, applies the committed migrations and lets aerich write the
difference into `migrations/<engine>/models/`. The test suite calls `pending_changes` on every
engine, so a model change without its migrations fails the tests.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

from aerich import Command
from aerich.migrate import Migrate

from stargraph.store.db import (
    APP,
    close_db,
    create_database,
    drop_database,
    init_db,
    migrate,
    migrations_location,
    tortoise_config,
)

DEFAULT_SERVERS = {
    "postgres": "postgres://postgres@127.0.0.1:5432/",
    "mysql": "mysql://root:@127.0.0.1:3306/",
}


def _reset_aerich() -> None:
    """aerich keeps its diff in class attributes (one run per process); start from empty."""
    for name in (
        "upgrade_operators",
        "downgrade_operators",
        "_upgrade_fk_m2m_index_operators",
        "_downgrade_fk_m2m_index_operators",
        "_upgrade_m2m",
        "_downgrade_m2m",
    ):
        setattr(Migrate, name, [])
    Migrate._rename_fields = {}
    Migrate._rename_models = {}
    Migrate._last_version_content = None


def _has_versions(url: str) -> bool:
    folder = migrations_location(url) / APP
    return folder.is_dir() and any(folder.glob("[0-9]*_*.py"))


async def pending_changes(url: str) -> list[str]:
    """The SQL aerich would put in a new migration for this database, which must be at head.

    Empty when the models and the committed migrations agree. Writes nothing in the project.
    """
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(migrations_location(url), Path(tmp), dirs_exist_ok=True)
        _reset_aerich()
        command = Command(tortoise_config(url), app=APP, location=tmp)
        await command.init()
        await command.migrate("pending", no_input=True)
        return list(Migrate.upgrade_operators)


async def _write_for(url: str, name: str) -> str | None:
    """Write the next migration for one engine from a scratch database; None if none needed."""
    command = Command(tortoise_config(url), app=APP, location=str(migrations_location(url)))
    if not _has_versions(url):
        _reset_aerich()
        # aerich opens its own Tortoise context in a ContextVar: keep it inside a task.
        await asyncio.create_task(command.init_db(safe=True))
        await asyncio.create_task(command.aclose())
        return "init"
    await init_db(url)
    try:
        await migrate(url)
        _reset_aerich()
        await command.init()
        return await command.migrate(name, no_input=True) or None
    finally:
        await close_db()


def _scratch_url(engine: str, servers: dict[str, str], tmp: Path) -> str:
    name = f"sg_scratch_{uuid.uuid4().hex[:12]}"
    if engine == "sqlite":
        return f"sqlite://{tmp / name}.db"
    return servers[engine].rstrip("/") + "/" + name


async def make_migrations(name: str, servers: dict[str, str] | None = None) -> dict[str, str]:
    """Write migration NAME for sqlite, postgres and mysql; returns {engine: version written}."""
    servers = {**DEFAULT_SERVERS, **(servers or {})}
    written: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("sqlite", "postgres", "mysql"):
            url = _scratch_url(engine, servers, Path(tmp))
            await create_database(url)
            try:
                version = await _write_for(url, name)
            finally:
                await close_db()
                await drop_database(url)
            if version:
                written[engine] = version
    return written
