"""Text that reaches a database query must be refused as input first, on every engine.

PostgreSQL rejects NUL bytes in text and Tortoise checks column lengths before it writes,
so a value that SQLite lets through can become an internal error elsewhere. Each case: a
coded error for the caller, and nothing changed. Found by the schema fuzz on PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import Client, Stack, database_url, running_stargraph
from tests.hostile.state import snapshot

CASES = {
    "login name with NUL": (
        'mutation { login(username: "fox\\u0000", password: "whatever1") { token } }',
        "UNAUTHENTICATED",
    ),
    "grant reason with NUL": (
        'mutation { grantPoints(userId: "{user}", amount: 5, reason: "a\\u0000b") { available } }',
        "BAD_USER_INPUT",
    ),
    "job cursor with NUL": ('{ jobs(after: "{job_nul}") { edges { cursor } } }', "BAD_USER_INPUT"),
    "job cursor too long": ('{ jobs(after: "{job_long}") { edges { cursor } } }', "BAD_USER_INPUT"),
    "image cursor with NUL": (
        '{ gallery(after: "{image_nul}") { edges { cursor } } }', "BAD_USER_INPUT"),
    "image cursor too long": (
        '{ gallery(after: "{image_long}") { edges { cursor } } }', "BAD_USER_INPUT"),
}  # fmt: skip


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture(params=["sqlite", "postgres"])
async def world(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Stack, Client, Client]]:
    async with (
        database_url(request.param, tmp_path) as url,
        running_stargraph(tmp_path, worker=False, database_url=url) as stack,
    ):
        yield stack, await stack.client.register("texts"), await stack.admin()


@pytest.mark.parametrize("case", list(CASES))
async def test_text_a_database_would_refuse_is_refused_first(
    world: tuple[Stack, Client, Client], case: str
) -> None:
    stack, user, admin = world
    template, code = CASES[case]
    query = (
        template.replace("{user}", str(user.user_id))  # type: ignore[attr-defined]
        .replace("{job_nul}", _cursor("job:a\x00b"))
        .replace("{job_long}", _cursor("job:" + "z" * 300))
        .replace("{image_nul}", _cursor("image:a\x00b"))
        .replace("{image_long}", _cursor("image:" + "z" * 300))
    )
    before = await snapshot(stack.services)
    body = await admin.post(query)
    codes = [e["extensions"]["code"] for e in body.get("errors", [])]
    assert codes == [code], body
    assert await snapshot(stack.services) == before
