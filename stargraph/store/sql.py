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
from collections.abc import Sequence
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import TransactionalDBClient

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
