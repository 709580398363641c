"""The hardening knobs from Settings, through a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tests.e2e.harness import PROTOCOL, GraphQLError, running_stargraph, subscriptions

MY_EVENTS = "subscription { myJobEvents { jobId } }"


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/graphql"


async def test_body_and_message_sizes_are_capped(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path, worker=False, max_body_bytes=4096, max_ws_message_bytes=2048
    ) as stack:
        big = {"query": "{ pricePerImage }", "variables": {"pad": "x" * 5000}}
        response = await stack.client.http.post("/graphql", json=big)
        assert response.status_code == 413
        ok = await stack.client.http.post("/graphql", json={"query": "{ pricePerImage }"})
        assert ok.json() == {"data": {"pricePerImage": 10}}
        async with connect(_ws(stack.url), subprotocols=[PROTOCOL]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"x": "y" * 4000}}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_websockets_are_compressed_only_when_configured(tmp_path: Path) -> None:
    """Subscription frames are a few hundred bytes: by default the server declines the
    permessage-deflate that clients offer (the websockets client offers it, as browsers do)."""
    for enabled in (False, True):
        stargraph = running_stargraph(tmp_path / str(enabled), worker=False, ws_compression=enabled)
        async with stargraph as stack, connect(_ws(stack.url), subprotocols=[PROTOCOL]) as ws:
            offered = ws.request is not None and ws.request.headers.get("Sec-WebSocket-Extensions")
            assert offered and "permessage-deflate" in offered
            names = [extension.name for extension in ws.protocol.extensions]
            assert names == (["permessage-deflate"] if enabled else [])
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"


async def test_subscriptions_per_user_are_limited(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False, max_subscriptions_per_user=2) as stack:
        user = await stack.client.register("sam")
        async with (
            subscriptions(stack.url, user.token) as one,
            subscriptions(stack.url, user.token) as two,
        ):
            await one.subscribe(MY_EVENTS)
            await two.subscribe(MY_EVENTS)
            await stack.until_open_subscriptions(2)
            third = await two.subscribe(MY_EVENTS)
            with pytest.raises(GraphQLError) as refused:
                async for _ in two.events(third, wait_s=10):
                    pass
            assert refused.value.code == "RATE_LIMITED"
        await stack.until_open_subscriptions(0)  # both sockets closed: their places are back
        other = await stack.client.register("kim")  # the limit is per user, on any socket
        async with subscriptions(stack.url, other.token) as ws:
            await ws.subscribe(MY_EVENTS)
            await ws.subscribe(MY_EVENTS)
            third = await ws.subscribe(MY_EVENTS)  # one socket's messages are taken in order
            with pytest.raises(GraphQLError) as refused:
                async for _ in ws.events(third, wait_s=10):
                    pass
            assert refused.value.code == "RATE_LIMITED"


async def test_a_bad_token_closes_the_socket_with_4403(tmp_path: Path) -> None:
    async with (
        running_stargraph(tmp_path, worker=False) as stack,
        connect(_ws(stack.url), subprotocols=[PROTOCOL]) as ws,
    ):
        payload = {"Authorization": "Bearer forged"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_introspection_and_graphiql_can_be_switched_off(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:
        page = await stack.client.http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        assert await stack.client.data("{ __schema { queryType { name } } }")
    async with running_stargraph(tmp_path / "closed", worker=False, graphiql=False,
                                 introspection=False) as stack:  # fmt: skip
        page = await stack.client.http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code != 200 or "graphiql" not in page.text.lower()
        with pytest.raises(GraphQLError) as refused:
            await stack.client.data("{ __schema { queryType { name } } }")
        assert refused.value.code == "GRAPHQL_VALIDATION_FAILED"


async def test_only_allowed_browser_origins(tmp_path: Path) -> None:
    allowed = Origin("https://app.example.com")
    async with running_stargraph(tmp_path, worker=False, allowed_origins=[allowed]) as stack:
        with pytest.raises(InvalidStatus):
            async with connect(
                _ws(stack.url),
                subprotocols=[PROTOCOL],
                origin=Origin("https://evil.example.com"),
            ):
                pass
        async with connect(_ws(stack.url), subprotocols=[PROTOCOL], origin=allowed):
            pass
        preflight = {"Origin": allowed, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
        response = await stack.client.http.options("/graphql", headers=preflight)
        assert response.headers.get("access-control-allow-origin") == allowed
        response = await stack.client.http.options(
            "/graphql", headers={**preflight, "Origin": "https://evil.example.com"}
        )
        assert response.headers.get("access-control-allow-origin") is None


async def test_a_resume_cursor_whose_events_are_gone_is_refused_with_its_own_code(
    tmp_path: Path,
) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:
        user = await stack.client.register("ida")
        async with subscriptions(stack.url, user.token) as ws:
            # a cursor from before the user's stream expired: events after it may be lost
            op = await ws.subscribe(
                "subscription($a: String) { myJobEvents(after: $a) { jobId } }", {"a": "1-0"}
            )
            with pytest.raises(GraphQLError) as refused:
                async for _ in ws.events(op, wait_s=10):
                    pass
            assert refused.value.code == "CURSOR_EXPIRED"
