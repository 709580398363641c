"""Replays a recorded transcript against a simulator and collects what came back.

The transcript drives everything: its requests are sent as recorded, its sockets opened, fed
and closed in order. Before each action the replayer waits until every open socket has
received as many frames as the real server had sent it by then (`progress_state` aside), so the
interleaving is the recorded one. The simulator runs with manual sampler steps; a step is
released only when the simulator is blocked on one, every frame it sent has arrived, and the
recording says more frames came before the next action. Nothing depends on wall-clock timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from stargraph.comfy.sim_graph import CachedNode, signatures
from stargraph.comfy.sim_images import Picture
from stargraph.comfy.sim_nodes import NODE_FUNCTIONS
from stargraph.comfy.sim_validate import validate_prompt
from stargraph.comfy.simulator import SimulatorHandle

BARRIER_TIMEOUT = 15.0


@dataclass
class Exchange:
    request: dict[str, Any]
    expected: dict[str, Any] | None
    status: int = 0
    content_type: str = ""
    body: Any = None


@dataclass
class ReplaySocket:
    name: str
    ws: ClientConnection
    frames: list[str | bytes] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def is_progress_state(entry: dict[str, Any]) -> bool:
    return bool(entry["kind"] == "ws_text" and entry["msg"]["type"] == "progress_state")


def kept_frame(frame: str | bytes) -> bool:
    return isinstance(frame, bytes) or json.loads(frame)["type"] != "progress_state"


class Replayer:
    def __init__(self, handle: SimulatorHandle, entries: list[dict[str, Any]]) -> None:
        self.handle = handle
        self.sim = handle.simulator
        self.entries = entries
        self.sockets: dict[str, ReplaySocket] = {}
        self.expected: dict[str, list[dict[str, Any]]] = {}
        self.exchanges: list[Exchange] = []
        self._arrived = asyncio.Event()
        self._received = 0
        self.http = httpx.AsyncClient(base_url=handle.url, timeout=30)

    async def run(self) -> None:
        counts: dict[str, int] = {}
        try:
            for index, entry in enumerate(self.entries):
                kind = entry["kind"]
                if kind in ("ws_text", "ws_binary"):
                    if not is_progress_state(entry):
                        counts[entry["sock"]] = counts.get(entry["sock"], 0) + 1
                        self.expected.setdefault(entry["sock"], []).append(entry)
                elif kind in ("http_req", "ws_open", "ws_send", "ws_close"):
                    await self.barrier(counts)
                    await self._act(index, entry)
            await self.barrier(counts)
        finally:
            await self.aclose()

    def received(self, sock: str) -> list[str | bytes]:
        return [f for f in self.sockets[sock].frames if kept_frame(f)]

    # --- barrier ---------------------------------------------------------------------------

    async def barrier(self, counts: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BARRIER_TIMEOUT
        while True:
            self._arrived.clear()
            if self._reached(counts):
                return
            if self._stable():
                await self.sim.release_steps(1)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"barrier not reached: want {counts}, got {self._counts()}")
            await self._wait_for_change(min(remaining, 0.05))

    def _reached(self, counts: dict[str, int]) -> bool:
        have = self._counts()
        return all(have.get(sock, 0) >= n for sock, n in counts.items())

    def _counts(self) -> dict[str, int]:
        return {name: len(self.received(name)) for name in self.sockets}

    def _stable(self) -> bool:
        """Blocked on a step, nothing queued or in flight: only a released step changes things."""
        gate = self.sim.engine.gate
        return gate.waiting and self.sim.hub.idle and self._received == self.sim.hub.frames_sent

    async def _wait_for_change(self, limit: float) -> None:
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(self._arrived.wait())]
        if not self.sim.engine.gate.waiting:
            waiters.append(asyncio.create_task(self.sim.wait_for_step()))
        try:
            await asyncio.wait(waiters, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # --- actions ---------------------------------------------------------------------------

    async def _act(self, index: int, entry: dict[str, Any]) -> None:
        kind = entry["kind"]
        if kind == "ws_open":
            await self._open(entry)
        elif kind == "ws_send":
            await self.sockets[entry["sock"]].ws.send(json.dumps(entry["msg"]))
        elif kind == "ws_close":
            await self._close(entry["sock"])
        else:
            await self._request(index, entry)

    async def _open(self, entry: dict[str, Any]) -> None:
        path = entry["url"].split("8188", 1)[1]
        url = self.handle.url.replace("http://", "ws://") + path
        ws = await connect(url, max_size=None, ping_interval=None, compression=None)
        sock = ReplaySocket(entry["sock"], ws)
        sock.task = asyncio.create_task(self._read(sock))
        self.sockets[entry["sock"]] = sock

    async def _read(self, sock: ReplaySocket) -> None:
        with contextlib.suppress(Exception):
            async for frame in sock.ws:
                sock.frames.append(frame)
                self._received += 1
                self._arrived.set()

    async def _close(self, name: str) -> None:
        before = self.sim.hub.socket_count
        await self.sockets[name].ws.close()
        while self.sim.hub.socket_count >= before:
            await asyncio.wait_for(self.sim.hub.changed.wait(), BARRIER_TIMEOUT)

    async def _request(self, index: int, entry: dict[str, Any]) -> None:
        expected = next(
            (
                e
                for e in self.entries[index + 1 :]
                if e["kind"] == "http_resp"
                and e["path"] == entry["path"]
                and e["method"] == entry["method"]
            ),
            None,
        )
        kwargs: dict[str, Any] = {}
        if entry.get("json") is not None:
            kwargs["json"] = entry["json"]
        elif entry.get("raw") is not None:
            kwargs["content"] = entry["raw"].encode()
        response = await self.http.request(entry["method"], entry["path"], **kwargs)
        body: Any = None
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
        self.exchanges.append(
            Exchange(
                entry,
                expected,
                response.status_code,
                response.headers.get("content-type", ""),
                body,
            )
        )

    async def aclose(self) -> None:
        for sock in self.sockets.values():
            await sock.ws.close()
            if sock.task is not None:
                sock.task.cancel()
        await self.http.aclose()


# --- cache priming -------------------------------------------------------------------------


class _Quiet:
    """A node context that does nothing but save images (priming runs no events)."""

    def __init__(self, handle: SimulatorHandle, prompt: dict[str, Any]) -> None:
        self.config = handle.simulator.config
        self.store = handle.simulator.engine.store

    async def spend(self, seconds: float) -> None:
        return None

    async def sample(self, steps: int, latent: Picture) -> None:
        return None

    async def send_text(self, text: str) -> None:
        return None

    def save_images(self, picture: Picture, prefix: str, kind: str) -> list[dict[str, str]]:
        return self.store.save(picture, prefix, kind)


async def prime_cache(handle: SimulatorHandle, prompt: dict[str, Any], nodes: list[str]) -> None:
    """Put `nodes` of `prompt` in the simulator's cache, as an earlier run would have."""
    prompt = copy.deepcopy(prompt)
    validate_prompt(prompt, handle.simulator.engine.info)  # coerces values like the server
    keys = signatures(prompt)
    values: dict[str, tuple[Any, ...]] = {}
    context = _Quiet(handle, prompt)
    pending = list(nodes)
    while pending:
        for node_id in pending:
            links = [v for v in prompt[node_id]["inputs"].values() if isinstance(v, list)]
            if all(link[0] in values for link in links):
                break
        inputs = {
            name: values[v[0]][v[1]] if isinstance(v, list) else v
            for name, v in prompt[node_id]["inputs"].items()
        }
        result = await NODE_FUNCTIONS[prompt[node_id]["class_type"]](context, inputs)
        values[node_id] = result.outputs
        handle.simulator.engine.cache.put(keys[node_id], CachedNode(result.outputs, result.ui))
        pending.remove(node_id)
