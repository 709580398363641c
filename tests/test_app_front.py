"""The API's front sends GraphQL straight to its view and everything else to Starlette."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from stargraph.app import GraphQLFirst


class _Recorder:
    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append((scope["type"], scope.get("path", "")))


async def _nothing() -> Any:
    return {}


async def _ignore(message: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("scope", "to_graphql"),
    [
        ({"type": "http", "path": "/graphql"}, True),
        ({"type": "websocket", "path": "/graphql"}, True),
        ({"type": "http", "path": "/api/graphql", "root_path": "/api"}, True),
        ({"type": "http", "path": "/graphql/"}, False),
        ({"type": "http", "path": "/healthz"}, False),
        ({"type": "http", "path": "/api/healthz", "root_path": "/api"}, False),
        ({"type": "lifespan"}, False),
    ],
)
async def test_graphql_goes_to_the_view_and_the_rest_to_starlette(
    scope: Scope, to_graphql: bool
) -> None:
    graphql, other = _Recorder(), _Recorder()
    front = GraphQLFirst(graphql, other)  # type: ignore[arg-type]
    await front(scope, _nothing, _ignore)
    assert (len(graphql.paths), len(other.paths)) == ((1, 0) if to_graphql else (0, 1))
