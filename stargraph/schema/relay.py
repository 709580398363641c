"""Relay-style connections over the domain's keyset pages, with opaque cursors.

A cursor is the base64 of `<kind>:<key>`, where key is the id of the last item of a page
(the domain pages by "after this id"). Clients must treat cursors as opaque.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry

from stargraph.domain.errors import BadUserInput

T = TypeVar("T")
N = TypeVar("N")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    node: T
    cursor: str


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


_MAX_KEY = 64


def encode_cursor(kind: str, key: object) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The key inside `cursor`; BAD_USER_INPUT (field `after`) if it is not one of ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    prefix, _, key = raw.partition(":")
    # our keys are ids: short and printable (a NUL or a long key would reach the database)
    if prefix != kind or not key or len(key) > _MAX_KEY or not key.isprintable():
        raise BadUserInput("invalid cursor", field="after")
    return key


def check_first(first: int | None, cap: int) -> int:
    """The page size asked for, within 0..cap; BAD_USER_INPUT (field `first`) otherwise."""
    size = 20 if first is None else first
    if not 0 <= size <= cap:
        raise BadUserInput(f"first must be between 0 and {cap}", field="first")
    return size


def connection(
    items: Sequence[N],
    *,
    kind: str,
    key: Callable[[N], object],
    convert: Callable[[N], T],
    has_more: bool,
    after: str | None,
) -> Connection[T]:
    """Wrap one page of domain values as a connection of schema values."""
    edges = [Edge(node=convert(item), cursor=encode_cursor(kind, key(item))) for item in items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_more,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
