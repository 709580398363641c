"""ComfySocket: announcements, reconnects after drops and restarts, silence, clean shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from stargraph.comfy.client import ComfyClient
from stargraph.comfy.connection import Backoff, ComfySocket, ws_url
from stargraph.comfy.messages import (
    Connected,
    Disconnected,
    Executed,
    Executing,
    PreviewImage,
    PreviewImageWithMetadata,
    Progress,
    Status,
)
from stargraph.comfy.simulator import SimulatorHandle

from .events import Events, following, new_socket
from .graphs import collect_until_done, t2i


def test_ws_url() -> None:
    assert ws_url("http://h:8188/", "a b") == "ws://h:8188/ws?clientId=a%20b"
    assert ws_url("https://h", "x") == "wss://h/ws?clientId=x"


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(initial=0.1, factor=2, maximum=1.0, jitter=0.5)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        delay = backoff.delay(attempt)
        assert ceiling * 0.5 <= delay <= ceiling


async def test_connected_first_then_the_servers_status(sim: SimulatorHandle) -> None:
    async with following(sim) as events:
        connected = await events.next(Connected)
        assert connected.reconnect is False
        status = await events.next(Status)
        assert status.sid == events.socket.client_id
        assert events.seen[:2] == [connected, status]
        assert events.socket.connected


async def test_a_prompt_streams_to_its_client(sim: SimulatorHandle, client: ComfyClient) -> None:
    async with following(sim) as events:
        await events.next(Status)
        await client.post_prompt(t2i(steps=3), "p1", events.socket.client_id)
        seen = await collect_until_done(events, "p1")
    progress = [e.value for e in seen if isinstance(e, Progress)]
    assert progress == [1, 2, 3]
    executed = [e for e in seen if isinstance(e, Executed)]
    assert [e.node for e in executed] == ["9"]
    previews = [e for e in seen if isinstance(e, PreviewImageWithMetadata)]
    assert len(previews) == 3 and all(p.prompt_id == "p1" for p in previews)


async def test_without_preview_metadata_previews_are_plain(sim: SimulatorHandle) -> None:
    async with following(sim, preview_metadata=False) as events, ComfyClient(sim.url) as comfy:
        await events.next(Status)
        await comfy.post_prompt(t2i(steps=2), "p2", events.socket.client_id)
        seen = await collect_until_done(events, "p2")
    assert sum(isinstance(e, PreviewImage) for e in seen) == 2
    assert not any(isinstance(e, PreviewImageWithMetadata) for e in seen)


async def test_reconnects_after_a_drop_and_keeps_receiving(manual_sim: SimulatorHandle) -> None:
    sim = manual_sim.simulator
    async with following(manual_sim) as events, ComfyClient(manual_sim.url) as comfy:
        await events.next(Status)
        await comfy.post_prompt(t2i(steps=4), "p3", events.socket.client_id)
        await sim.wait_for_step()
        await sim.release_steps(1)
        await events.next(Progress, value=1)

        await manual_sim.drop_sockets()
        await events.next(Disconnected)
        assert (await events.next(Connected)).reconnect is True
        # The server tells a reconnecting client which node runs (protocol §2.1).
        assert (await events.next(Executing)).node == "3"

        await sim.release_steps(None)
        seen = await collect_until_done(events, "p3")
    assert [e.value for e in seen if isinstance(e, Progress)] == [2, 3, 4]
    assert sim.hub.socket_count <= 1


async def test_reconnects_after_a_restart_with_downtime(
    sim: SimulatorHandle, client: ComfyClient
) -> None:
    async with following(sim) as events:
        await events.next(Status)
        await sim.restart(downtime=0.2)
        down = await events.next(Disconnected)
        assert down.reason
        assert (await events.next(Connected)).reconnect is True
        # Several attempts failed while the port was closed; only one Disconnected was told.
        assert sum(isinstance(e, Disconnected) for e in events.seen) == 1
        await client.post_prompt(t2i(steps=1), "after", events.socket.client_id)
        await collect_until_done(events, "after")


async def test_a_refused_handshake_is_retried(sim: SimulatorHandle, client: ComfyClient) -> None:
    sim.faults.refuse = True
    async with following(sim) as events:
        assert "503" in (await events.next(Disconnected)).reason
        sim.faults.refuse = False
        assert (await events.next(Connected)).reconnect is False


async def test_a_silent_socket_is_replaced_while_a_job_is_in_flight(
    manual_sim: SimulatorHandle,
) -> None:
    sim = manual_sim.simulator
    async with (
        following(manual_sim, silence_timeout=0.2) as events,
        ComfyClient(manual_sim.url) as comfy,
    ):
        await events.next(Status)
        await comfy.post_prompt(t2i(steps=3), "p4", events.socket.client_id)
        await events.next(Executing, node="3")
        sim.mute_sockets()  # the socket stays open but hears nothing, like a stuck ComfyUI
        events.socket.set_active(True)
        assert (await events.next(Disconnected)).reason == "silent"
        assert (await events.next(Connected)).reconnect is True
        await sim.release_steps(None)
        seen = await collect_until_done(events, "p4")
        events.socket.set_active(False)
    assert [e.value for e in seen if isinstance(e, Progress)] == [1, 2, 3]


async def test_aclose_ends_iteration_while_waiting_to_reconnect(sim: SimulatorHandle) -> None:
    await sim.simulator.aclose()
    await sim.stop_listening()
    socket = new_socket(sim, backoff=Backoff(initial=30, maximum=30, jitter=0))
    events = Events(socket)
    await events.next(Disconnected)
    await events.close()  # would hang for 30 s if the back-off sleep ignored aclose()
    assert not socket.connected


async def test_aclose_ends_iteration_while_connected(sim: SimulatorHandle) -> None:
    events = Events(new_socket(sim))
    await events.next(Status)
    await events.close()
    assert not any(isinstance(e, Disconnected) for e in events.seen)
    assert sim.simulator.hub.socket_count == 0 or await _closed_soon(sim)


async def _closed_soon(sim: SimulatorHandle) -> bool:
    async with asyncio.timeout(5):
        while sim.simulator.hub.socket_count:
            await sim.simulator.hub.changed.wait()
    return True


@pytest.fixture
async def junk_server() -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("{not json")
        await ws.send(b"\x00\x00")
        await ws.send(
            '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}}}'
        )
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def test_malformed_frames_are_skipped(junk_server: str) -> None:
    events = Events(ComfySocket(junk_server, "junk"))
    status = await events.next(Status)
    await events.close()
    assert status.queue_remaining == 2
    assert [type(e) for e in events.seen] == [Connected, Status]
