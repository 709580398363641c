"""A ComfyUI stand-in for tests, demos and benchmarks: same endpoints, messages and order, no GPU.

Built from recordings of the real server (`tests/comfy/recordings/`, replayed by
`tests/comfy/test_conformance.py`).

    async with running_simulator(SimulatorConfig(step_time=0.005)) as sim:
        client = ComfyClient(sim.url)             # http://127.0.0.1:<port>
        sim.faults.fail_prompts = 1               # the next prompt fails at its KSampler
        await sim.restart()                       # forget queue and history, drop sockets
        busy = sim.simulator.engine.records       # engine start/end per prompt

Pieces: `sim_config` (knobs), `sim_http` (endpoints), `sim_engine` (queue, worker, history),
`sim_run` (one prompt's events), `sim_graph` (cache, order), `sim_validate` (400 bodies),
`sim_nodes` (node classes), `sim_images` (PNGs, previews), `sim_hub` (sockets and routing).

CLI: `stargraph comfyui-sim` registers `add_arguments(parser)` and calls `run(args)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator

import uvicorn

from stargraph.comfy.sim_config import (
    RECORDED_CHECKPOINT,
    RECORDED_SAMPLERS,
    RECORDED_SCHEDULERS,
    Faults,
    SimulatorConfig,
)
from stargraph.comfy.sim_engine import Engine, PromptRecord
from stargraph.comfy.sim_http import build_app
from stargraph.comfy.sim_hub import Hub
from stargraph.embedded_server import EmbeddedServer

# ComfyUI serves HTTP through aiohttp, which keeps an idle connection open 75 s (uvicorn's
# default is 5 s): clients' kept-alive sockets must lapse the same way here.
KEEP_ALIVE_S = 75

__all__ = [
    "KEEP_ALIVE_S",
    "Faults",
    "PromptRecord",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandle",
    "add_arguments",
    "config_from_args",
    "run",
    "running_simulator",
    "serve_simulator",
]


class Simulator:
    """One simulated ComfyUI process: the ASGI `app`, live `faults`, control, timing records."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.faults = dataclasses.replace(self.config.faults)
        self.hub = Hub(self.faults)
        self.engine = Engine(self.config, self.faults, self.hub)
        self.app = build_app(self)

    async def start(self) -> None:
        """Start the worker and the publisher (inside the running event loop)."""
        self.hub.start()
        self.engine.start()

    async def aclose(self) -> None:
        await self.engine.stop()
        await self.hub.aclose()

    @property
    def records(self) -> list[PromptRecord]:
        """One record per accepted prompt: POST arrival, engine start and end, outcome."""
        return self.engine.records

    @property
    def post_times(self) -> list[float]:
        """The arrival (`time.monotonic()`) of every POST /prompt, rejected ones included."""
        return self.engine.post_times

    def busy_seconds(self, since: float, until: float) -> float:
        """Engine time spent on prompts within [since, until] (monotonic clock)."""
        total = 0.0
        for record in self.engine.records:
            if record.started_at is None:
                continue
            end = record.finished_at if record.finished_at is not None else until
            total += max(0.0, min(end, until) - max(record.started_at, since))
        return total

    async def restart(self) -> None:
        """Like a process restart: queue, history, cache and counter forgotten, sockets dropped.

        Saved images stay (they are files on disk for the real server).
        """
        await self.engine.stop()
        self.hub.discard_pending()
        await self.hub.close_all(1012)
        await self.engine.restart()

    async def drop_sockets(self) -> None:
        """Close every WebSocket now; the prompts keep running."""
        await self.hub.close_all(1011)

    def mute_sockets(self) -> None:
        """The sockets open now go quiet for good (they stay open); new sockets are heard."""
        self.hub.mute_current()

    async def release_steps(self, steps: int | None = 1) -> None:
        """With `manual_steps`: let samplers take `steps` more steps (None: run freely from now)."""
        await self.engine.gate.release(steps)

    async def wait_idle(self) -> None:
        """Until the queue is empty and no prompt runs."""
        await self.engine.wait_idle()

    async def wait_for_step(self) -> None:
        """With `manual_steps`: wait until a sampler waits for its next step."""
        await self.engine.gate.wait_until_waiting()


class SimulatorHandle:
    """A simulator served on a loopback port inside the current event loop."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def faults(self) -> Faults:
        return self.simulator.faults

    @property
    def records(self) -> list[PromptRecord]:
        return self.simulator.records

    @property
    def listening(self) -> bool:
        return self._task is not None

    async def start_listening(self) -> None:
        """Accept connections (again). The port stays the same across stops and starts."""
        if self._task is not None:
            return
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = EmbeddedServer(
            self.simulator.app,
            lifespan="off",
            ws="websockets-sansio",
            ws_ping_interval=None,  # the real server never pings; it answers pings
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=1,
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # start-up only: uvicorn exposes a flag, not an event
            if self._task.done():
                await self._task
            await asyncio.sleep(0.005)

    async def stop_listening(self) -> None:
        """Refuse connections: close the port and every open connection (state is kept)."""
        if self._task is None or self._server is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None

    async def restart(self, downtime: float = 0.0) -> None:
        """A process restart; with `downtime`, connections are refused for that long."""
        if downtime <= 0:
            await self.simulator.restart()
            return
        await self.stop_listening()
        await self.simulator.restart()
        await asyncio.sleep(downtime)
        await self.start_listening()

    async def drop_sockets(self) -> None:
        await self.simulator.drop_sockets()

    async def aclose(self) -> None:
        await self.stop_listening()
        await self.simulator.aclose()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SimulatorHandle]:
    """Serve a simulator on `host:port` (0 = a free port) for the duration of the block."""
    simulator = Simulator(config)
    await simulator.start()
    handle = SimulatorHandle(simulator, host, port)
    try:
        await handle.start_listening()
        yield handle
    finally:
        await handle.aclose()


async def serve_simulator(
    host: str = "127.0.0.1", port: int = 8188, config: SimulatorConfig | None = None
) -> None:
    """Serve a simulator until SIGINT/SIGTERM (the `stargraph comfyui-sim` command)."""
    simulator = Simulator(config)
    await simulator.start()
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                simulator.app,
                host=host,
                port=port,
                lifespan="off",
                access_log=False,
                ws="websockets-sansio",
                ws_ping_interval=None,
                timeout_keep_alive=KEEP_ALIVE_S,
                timeout_graceful_shutdown=2,
            )
        )
        await server.serve()
    finally:
        await simulator.aclose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `stargraph comfyui-sim`."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--step-time", type=float, default=0.05, help="seconds per step")
    parser.add_argument(
        "--step-jitter", type=float, default=0.0, help="spread of step times (sd ÷ mean)"
    )
    parser.add_argument("--load-time", type=float, default=0.0, help="seconds per model load")
    parser.add_argument("--checkpoints", default=RECORDED_CHECKPOINT, help="comma-separated")
    parser.add_argument("--samplers", default=None, help="comma-separated (default: ComfyUI's)")
    parser.add_argument("--schedulers", default=None, help="comma-separated (default: ComfyUI's)")
    parser.add_argument("--no-previews", action="store_true", help="send no preview frames")
    parser.add_argument("--preview-size", type=int, default=256)


def _names(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(part.strip() for part in value.split(",") if part.strip())


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        step_time=args.step_time,
        step_jitter=args.step_jitter,
        load_time=args.load_time,
        checkpoints=_names(args.checkpoints, (RECORDED_CHECKPOINT,)),
        samplers=_names(args.samplers, RECORDED_SAMPLERS),
        schedulers=_names(args.schedulers, RECORDED_SCHEDULERS),
        previews=not args.no_previews,
        preview_size=args.preview_size,
    )


def run(args: argparse.Namespace) -> int:
    """Run `stargraph comfyui-sim` with parsed arguments; returns the exit status."""
    asyncio.run(serve_simulator(args.host, args.port, config_from_args(args)))
    return 0
