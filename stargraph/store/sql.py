"""Hot statements as raw SQL: written once with `?` placeholders, rendered once per dialect.

Tortoise (pypika) builds a statement's text anew on every call, which costs several times
what the database round trip does on the submit path. The statements here are plain SQL that
SQLite, PostgreSQL and MariaDB all accept: no quoted identifiers, no RETURNING, no `%` (except
where a caller runs one on a single `dialect()` and says so). They
run on Tortoise's connection, so they join the caller's `in_transaction()` and raise
Tortoise's IntegrityError like any ORM call.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tortoise import connections
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.exceptions import IntegrityError, OperationalError

T = TypeVar("T")

_CONNECTION = "default"


class Statement:
    """One SQL statement; its text for a dialect is built on first use and kept."""

    __slots__ = ("_rendered", "_text")

    def __init__(self, text: str) -> None:
        if "%" in text:
            raise ValueError("MariaDB's driver formats with %: keep it out of raw SQL")
        self._text = " ".join(text.split())
        self._rendered: dict[str, str] = {}

    def text(self, dialect: str) -> str:
        """The statement with the dialect's placeholders: `?`, `$1…` or `%s`."""
        rendered = self._rendered.get(dialect)
        if rendered is None:
            rendered = self._rendered[dialect] = _placeholders(self._text, dialect)
        return rendered


def _placeholders(text: str, dialect: str) -> str:
    if dialect == "postgres":
        numbers = itertools.count(1)
        return "".join(f"${next(numbers)}" if c == "?" else c for c in text)
    if dialect == "mysql":
        return text.replace("?", "%s")
    return text


def dialect() -> str:
    """The database's dialect: "sqlite", "postgres" or "mysql"."""
    return str(connections.get(_CONNECTION).capabilities.dialect)


async def execute(statement: Statement, *values: object) -> int:
    """Run a write; the number of rows it changed (matched, on SQLite and PostgreSQL: keep
    conditional UPDATEs such that every matched row changes)."""
    client = connections.get(_CONNECTION)
    result: tuple[int, Sequence[Any]] = await client.execute_query(
        statement.text(client.capabilities.dialect), values
    )
    return result[0]


async def fetch(statement: Statement, *values: object) -> Sequence[Any]:
    """Run a SELECT; its rows, each indexable by column name."""
    client = connections.get(_CONNECTION)
    result: tuple[int, Sequence[Any]] = await client.execute_query(
        statement.text(client.capabilities.dialect), values
    )
    return result[1]


async def execute_many(statement: Statement, rows: Sequence[Sequence[object]]) -> None:
    """Run a write once per row of values, in one call to the driver (the caller's
    transaction when it holds one, else a transaction of its own)."""
    client = connections.get(_CONNECTION)
    await client.execute_many(statement.text(client.capabilities.dialect), [list(r) for r in rows])


def in_transaction() -> bool:
    """Whether the calling task holds an open `in_transaction()`."""
    return isinstance(connections.get(_CONNECTION), TransactionalDBClient)


class SqliteSteps:
    """The statements of a `sqlite_transaction`, run where it runs."""

    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def fetch(self, statement: Statement, *values: object) -> list[Any]:
        """Run a statement that returns rows; its rows, each indexable by column name."""
        return self._connection.execute(statement.text("sqlite"), values).fetchall()

    def execute_many(self, statement: Statement, rows: Sequence[Sequence[object]]) -> None:
        """Run a write once per row of values."""
        self._connection.executemany(statement.text("sqlite"), rows)


async def sqlite_transaction(work: Callable[[SqliteSteps], T]) -> T:
    """SQLite, outside `in_transaction()`: `work` as one transaction (BEGIN IMMEDIATE, its
    statements, COMMIT; ROLLBACK if it raises) on the connection's own thread, in one hop.

    aiosqlite runs each call on that thread: a transaction of N statements awaited one by one
    costs N + 3 hops there and back, each handing the GIL over twice. Tortoise's lock on the
    connection is held throughout, so no other statement runs on it meanwhile. Raises
    Tortoise's IntegrityError and OperationalError, like its own calls."""
    client = connections.get(_CONNECTION)
    async with client.acquire_connection() as connection:
        run = connection._execute  # aiosqlite has no public way to run a function there
        try:
            return await run(_transaction, connection._conn, work)  # type: ignore[no-any-return]
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(exc) from exc
        except sqlite3.OperationalError as exc:
            raise OperationalError(exc) from exc


def _transaction(connection: sqlite3.Connection, work: Callable[[SqliteSteps], T]) -> T:
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(SqliteSteps(connection))
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result
