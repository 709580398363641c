"""Every request limit, through a real server: the right answer, and nothing changed.

Each over-limit request carries a submission (or a subscription) that would change state if
it ran, so "nothing changed" proves the limit stops it before execution.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from tests.e2e.harness import PROTOCOL, Client, Stack, running_stargraph, subscriptions
from tests.hostile.rawhttp import raw_request
from tests.hostile.state import snapshot

SUBMIT_FIELDS = 'submitText2Image(input: {prompt: "a fox", steps: 1, width: 64, height: 64})'
MY_EVENTS = "subscription { myJobEvents { jobId } }"


@asynccontextmanager
async def _stack(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Stack, Client]]:
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.01), worker=False,
        default_model=RECORDED_CHECKPOINT, **settings,
    ) as stack:  # fmt: skip
        yield stack, await stack.client.register("limits")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Stack, Client]]:
    async with _stack(tmp_path) as pair:
        yield pair


def _codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def _refused(stack: Stack, user: Client, query: str, code: str) -> dict[str, Any]:
    """Send `query`; it must fail with `code` and change nothing."""
    before = await snapshot(stack.services)
    body = await user.post(query)
    assert code in _codes(body), body
    assert body.get("data") is None or not any(body["data"].values()), body
    assert await snapshot(stack.services) == before
    return body


def _nested_images(levels: int) -> str:
    inner = "id"
    for _ in range(levels):
        inner = f"images {{ job {{ {inner} }} }}"
    return inner


async def test_query_depth_is_limited(world: tuple[Stack, Client]) -> None:
    stack, user = world
    deep = f"mutation {{ {SUBMIT_FIELDS} {{ {_nested_images(8)} }} }}"  # depth 1 + 16 > 12
    body = await _refused(stack, user, deep, "QUERY_TOO_COMPLEX")
    assert "depth" in body["errors"][0]["message"]
    shallow = f"mutation {{ {SUBMIT_FIELDS} {{ {_nested_images(2)} }} }}"
    assert (await user.data(shallow))["submitText2Image"]["images"] == []


async def test_aliases_are_limited(world: tuple[Stack, Client]) -> None:
    stack, user = world
    limit = stack.settings.max_aliases
    many = " ".join(f"a{i}: {SUBMIT_FIELDS} {{ id }}" for i in range(limit + 1))
    await _refused(stack, user, f"mutation {{ {many} }}", "QUERY_TOO_COMPLEX")
    few = " ".join(f"a{i}: pricePerImage" for i in range(limit))
    assert len(await user.data(f"{{ {few} }}")) == limit


async def test_tokens_are_limited(world: tuple[Stack, Client]) -> None:
    stack, user = world
    padding = " ".join("id" for _ in range(stack.settings.max_tokens))
    query = f"mutation {{ {SUBMIT_FIELDS} {{ {padding} }} }}"
    body = await _refused(stack, user, query, "QUERY_TOO_COMPLEX")
    assert "tokens" in body["errors"][0]["message"]


@pytest.mark.parametrize("field", ["jobs", "ledger", "gallery"])
async def test_page_size_is_capped(world: tuple[Stack, Client], field: str) -> None:
    stack, user = world
    cap = stack.settings.max_page_size
    for first in (cap + 1, -1, 2**31 - 1):
        body = await _refused(
            stack, user, f"{{ {field}(first: {first}) {{ edges {{ cursor }} }} }}", "BAD_USER_INPUT"
        )
        assert body["errors"][0]["extensions"].get("field") == "first"
    page = await user.data(f"{{ {field}(first: {cap}) {{ edges {{ cursor }} }} }}")
    assert isinstance(page[field]["edges"], list)


async def test_prompt_length_is_limited(world: tuple[Stack, Client]) -> None:
    stack, user = world
    submit = "mutation($p: String!) { submitText2Image(input: {prompt: $p, steps: 1}) { id cost } }"
    before = await snapshot(stack.services)
    body = await user.post(submit, {"p": "x" * 2001})
    assert _codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "prompt"
    assert await snapshot(stack.services) == before
    accepted = await user.data(submit, {"p": "x" * 2000})
    assert accepted["submitText2Image"]["cost"] == stack.settings.price_per_image


async def test_request_body_size_is_limited(tmp_path: Path) -> None:
    async with _stack(tmp_path, max_body_bytes=4096) as (stack, user):
        http, headers = stack.client.http, {"Authorization": f"Bearer {user.token}"}
        query = f"mutation {{ {SUBMIT_FIELDS} {{ id }} }}"
        big = json.dumps({"query": query, "variables": {"pad": "x" * 5000}}).encode()
        before = await snapshot(stack.services)
        response = await http.post("/graphql", content=big, headers=headers)
        assert response.status_code == 413

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        response = await http.post("/graphql", content=chunked(), headers=headers)
        assert response.status_code == 413
        host = stack.url.removeprefix("http://")
        for length in ("99999999999999999999", "-1", "4097", "1e3"):
            status, _ = await raw_request(
                stack.url,
                f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {user.token}\r\nContent-Length: {length}",
                big[:100],
            )
            assert status in (400, 413), length  # refused by uvicorn or by the limit
        assert await snapshot(stack.services) == before
        assert (await user.data(f"mutation {{ {SUBMIT_FIELDS} {{ id }} }}"))["submitText2Image"]


async def test_websocket_message_size_is_limited(tmp_path: Path) -> None:
    async with _stack(tmp_path, max_ws_message_bytes=2048) as (stack, user):
        url = stack.url.replace("http://", "ws://") + "/graphql"
        async with connect(url, subprotocols=[PROTOCOL]) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {user.token}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            padded = MY_EVENTS.replace("jobId", "jobId " + " " * 3000)
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": padded}})
            )
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert stack.services.metrics  # the server is still up and answers:
        assert (await user.data("{ me { username } }"))["me"]["username"] == "limits"


def _error_codes(message: dict[str, Any]) -> list[str]:
    payload = message["payload"]
    errors = payload if isinstance(payload, list) else payload.get("errors", [])
    return [e["extensions"]["code"] for e in errors]


async def test_subscriptions_per_user_are_limited_and_given_back(tmp_path: Path) -> None:
    async with _stack(tmp_path, max_subscriptions_per_user=2) as (stack, user):
        async with subscriptions(stack.url, user.token) as ws:
            await ws.subscribe(MY_EVENTS)
            await ws.subscribe(MY_EVENTS)
            await stack.until_open_subscriptions(2)
            async with subscriptions(stack.url, user.token) as other:
                third = await other.subscribe(MY_EVENTS)
                refused = await other.receive(10)
                assert refused["id"] == third, refused
                assert _error_codes(refused) == ["RATE_LIMITED"]
        await stack.until_open_subscriptions(0)
        async with subscriptions(stack.url, user.token) as ws:  # the places were given back
            ops = {await ws.subscribe(MY_EVENTS) for _ in range(2)}
            first = await ws.first_messages(
                ops, lambda: user.data(f"mutation {{ {SUBMIT_FIELDS} {{ id }} }}")
            )
            assert all(message["type"] == "next" for message in first.values()), first
