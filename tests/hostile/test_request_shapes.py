"""Request bodies and transports the GraphQL view must refuse cleanly (4xx or a coded error),
never with a 500 or an internal error: found by the body fuzz, pinned here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import Client, Stack, running_stargraph
from tests.hostile.judge import Operation, judge
from tests.hostile.state import snapshot


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Stack, Client]]:
    async with running_stargraph(tmp_path, worker=False) as stack:
        yield stack, await stack.client.register("shapes")


@pytest.mark.parametrize(
    "body",
    [b"null", b"5", b'"{ me { id } }"', b"true", b"\xff\xfe{}", b'{"query": "\xc3"}', b"[]"],
)
async def test_json_that_is_not_an_operation_is_a_400(
    world: tuple[Stack, Client], body: bytes
) -> None:
    stack, user = world
    headers = {"content-type": "application/json", "authorization": f"Bearer {user.token}"}
    response = await stack.client.http.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert judge(body.decode("latin-1"), Operation("invalid", ()), response).problems == []


async def test_a_subscription_over_http_is_refused_not_crashed(
    world: tuple[Stack, Client],
) -> None:
    """Strawberry runs a subscription sent by POST as if it were a query, and its generator
    field then fails as a null; it must be refused instead (400, or a coded request error)."""
    stack, user = world
    before = await snapshot(stack.services)
    query = "subscription { myJobEvents { jobId } }"
    response = await user.http.post(
        "/graphql", json={"query": query}, headers={"authorization": f"Bearer {user.token}"}
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        codes = [e["extensions"]["code"] for e in response.json()["errors"]]
        assert codes and "INTERNAL_SERVER_ERROR" not in codes, codes
    assert judge(query, Operation("subscription", ("myJobEvents",)), response).problems == []
    assert await snapshot(stack.services) == before
