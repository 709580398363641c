"""The worker: dispatcher, one listener per backend, housekeeping, in one TaskGroup.

`build_engine` wires the parts from plain values and ports; `run_worker(engine, stop)` runs
them until `stop` is set, then lets every send and every ending under way finish (nothing
is cut in the middle; whatever a crash would cut is recovered by leases and
reconciliation). `run_worker_from_settings` is the whole process for `stargraph worker`.
Run `python -m stargraph.worker` for a worker configured by `STARGRAPH_*` variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stargraph.domain.backends import BackendPool, BackendStatus, EngineGateway, Withdrawn
from stargraph.domain.capabilities import Capabilities
from stargraph.domain.dispatch import STANDBY_HOLD_MAX_S, Dispatcher, DispatchPolicy
from stargraph.domain.events import EventBus
from stargraph.domain.gallery import ImageFiles, ImageStore
from stargraph.domain.jobs import JobStore
from stargraph.domain.queue import JobQueue
from stargraph.domain.types import BackendId
from stargraph.embedded_server import EmbeddedServer
from stargraph.engine.board import BackendBoard
from stargraph.engine.capabilities import CapabilitiesBoard, CapabilitiesBook
from stargraph.engine.control import ComfyEngineControl
from stargraph.engine.gateway import EngineSocket
from stargraph.engine.listener import Listener
from stargraph.engine.progress_rows import ProgressRows
from stargraph.engine.reconcile import InEngineTable, ReconcilePolicy, Reconciler
from stargraph.engine.results import Finisher
from stargraph.engine.slots import RedisSlotBook
from stargraph.engine.sweeper import RedisMarker, Sweeper
from stargraph.metrics import CONTENT_TYPE
from stargraph.routes import healthz
from stargraph.runtime import configure_logging, run_loop
from stargraph.settings import Settings

log = logging.getLogger(__name__)

SocketFactory = Callable[[BackendId, str], EngineSocket]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The plain values the engine needs (from Settings, or chosen by a test)."""

    backends: tuple[BackendId, ...]
    max_inflight: int = 2
    lease_s: float = 60.0
    max_attempts: int = 5
    job_timeout_s: float = 600.0
    price_per_image: int = 10
    redis_prefix: str = "sg"
    fallback: Capabilities = field(default_factory=lambda: Capabilities((), (), ()))
    housekeeping_s: float = 2.0  # leases, queue repair, slot repair
    listener_tick_s: float = 5.0  # full reconciliation and timeouts per backend
    progress_write_s: float = 1.0  # how far the job rows' progress may lag behind the events
    post_grace_s: float | None = None  # None: lease_s
    capabilities_refresh_s: float = 60.0

    @property
    def post_grace(self) -> float:
        """How long a just-dispatched job may be missing from its backend (`post_grace_s`,
        or the lease)."""
        return self.post_grace_s if self.post_grace_s is not None else self.lease_s

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            backends=tuple(BackendId(u.rstrip("/")) for u in settings.comfyui_urls),
            max_inflight=settings.comfyui_max_inflight,
            lease_s=settings.lease_s,
            max_attempts=settings.dispatch_max_attempts,
            job_timeout_s=settings.job_timeout_s,
            price_per_image=settings.price_per_image,
            redis_prefix=settings.redis_prefix,
            fallback=Capabilities(
                tuple(settings.models), tuple(settings.samplers), tuple(settings.schedulers)
            ),
        )


@dataclass(frozen=True, slots=True)
class EnginePorts:
    """What the engine uses from the rest of StarGraph."""

    redis: Redis
    queue: JobQueue
    jobs: JobStore
    images: ImageStore
    files: ImageFiles
    events: EventBus
    gateway: EngineGateway
    sockets: SocketFactory  # (backend, client id) -> the backend's socket


@dataclass(slots=True)
class Engine:
    """The built worker parts; `backends()` and `capabilities` serve the API too."""

    config: EngineConfig
    pool: BackendPool
    slots: RedisSlotBook
    board: BackendBoard
    capabilities: CapabilitiesBook
    control: ComfyEngineControl
    dispatcher: Dispatcher
    listeners: list[Listener]
    sweeper: Sweeper
    gateway: EngineGateway
    progress: ProgressRows

    def backends(self) -> list[BackendStatus]:
        """Health, in-flight count, last error and mean run time of every backend."""
        return self.pool.snapshot()


def build_engine(
    config: EngineConfig,
    ports: EnginePorts,
    capabilities: CapabilitiesBook | None = None,
    refill_gap: Callable[[float], None] | None = None,
) -> Engine:
    pool = BackendPool(config.backends, config.max_inflight)
    slots = RedisSlotBook(ports.redis, config.redis_prefix)
    book = capabilities or CapabilitiesBook(
        config.fallback, CapabilitiesBoard(ports.redis, config.redis_prefix)
    )
    finisher = Finisher(
        jobs=ports.jobs,
        images=ports.images,
        files=ports.files,
        engine=ports.gateway,
        events=ports.events,
        queue=ports.queue,
        price_per_image=config.price_per_image,
        between_steps=pool.refills_first,  # refills on other backends go first
    )
    client_ids = {b: f"stargraph-{uuid.uuid4().hex[:16]}" for b in config.backends}
    progress = ProgressRows(ports.jobs, config.progress_write_s)
    table = InEngineTable(ports.jobs, max_age_s=config.listener_tick_s / 2)
    parts = _ListenerParts(finisher, slots, pool, book, progress, table)
    listeners = [_listener(config, ports, b, client_ids[b], parts) for b in config.backends]
    by_backend = {listener.backend: listener for listener in listeners}
    dispatcher = Dispatcher(
        queue=ports.queue,
        jobs=ports.jobs,
        events=ports.events,
        pool=pool,
        slots=slots,
        gateway=ports.gateway,
        client_ids=client_ids,
        policy=DispatchPolicy(
            lease_s=config.lease_s,
            max_attempts=config.max_attempts,
            standby_hold_s=_standby_hold_s(config),
        ),
        sent=lambda job, backend: by_backend[backend].expect(job),
        refill_gap=refill_gap,
    )
    board = BackendBoard(ports.redis, config.redis_prefix, slots)
    sweeper = Sweeper(
        queue=ports.queue,
        jobs=ports.jobs,
        slots=slots,
        pool=pool,
        marker=RedisMarker(ports.redis, config.redis_prefix),
        board=board,
        interval_s=config.housekeeping_s,
    )
    control = ComfyEngineControl(ports.gateway, slots)
    return Engine(
        config,
        pool,
        slots,
        board,
        book,
        control,
        dispatcher,
        listeners,
        sweeper,
        ports.gateway,
        progress,
    )


def _standby_hold_s(config: EngineConfig) -> float:
    """A job on standby goes back well before its lease ends or reconciliation, seeing it
    DISPATCHED but in no backend, would count it lost."""
    return min(STANDBY_HOLD_MAX_S, config.lease_s / 4, config.post_grace / 4)


@dataclass(frozen=True, slots=True)
class _ListenerParts:
    """What every listener of the worker shares."""

    finisher: Finisher
    slots: RedisSlotBook
    pool: BackendPool
    book: CapabilitiesBook
    progress: ProgressRows
    table: InEngineTable


def _listener(
    config: EngineConfig,
    ports: EnginePorts,
    backend: BackendId,
    client_id: str,
    parts: _ListenerParts,
) -> Listener:
    finisher, slots, book = parts.finisher, parts.slots, parts.book
    reconciler = Reconciler(
        backend=backend,
        engine=ports.gateway,
        jobs=ports.jobs,
        finisher=finisher,
        slots=slots,
        policy=ReconcilePolicy(
            job_timeout_s=config.job_timeout_s,
            post_grace_s=config.post_grace,
            max_attempts=config.max_attempts,
        ),
    )

    async def refresh_capabilities(b: BackendId) -> None:
        await book.refresh([b], ports.gateway.capabilities)

    return Listener(
        backend=backend,
        client_id=client_id,
        socket=lambda: ports.sockets(backend, client_id),
        engine=ports.gateway,
        jobs=ports.jobs,
        events=ports.events,
        finisher=finisher,
        reconciler=reconciler,
        table=parts.table,
        slots=slots,
        pool=parts.pool,
        progress=parts.progress,
        on_connect=refresh_capabilities,
        housekeeping_s=config.listener_tick_s,
    )


async def run_worker(engine: Engine, stop: asyncio.Event) -> None:
    """Run the dispatcher, every listener and the housekeeping until `stop` is set."""
    log.info("worker starting with %d backend(s)", len(engine.config.backends))
    if not engine.config.backends:
        log.warning("no ComfyUI backends configured (STARGRAPH_COMFYUI_URLS): jobs will wait")
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(engine.sweeper.run(stop))
        tasks.create_task(engine.progress.run(stop))
        tasks.create_task(_follow_releases(engine, stop))
        for listener in engine.listeners:
            tasks.create_task(listener.run(stop))
        tasks.create_task(engine.dispatcher.run(stop))
        tasks.create_task(  # each listener asks its backend on every (re)connect
            engine.capabilities.run(
                engine.config.backends,
                engine.gateway.capabilities,
                stop,
                engine.config.capabilities_refresh_s,
                at_once=False,
            )
        )
    log.info("worker stopped")


async def _follow_releases(engine: Engine, stop: asyncio.Event) -> None:
    """Slots freed by other processes wake this process's dispatcher too, and a job cancelled
    while on standby here is let go."""

    async def feed() -> None:
        async for notice in engine.slots.releases():
            if isinstance(notice, Withdrawn):
                engine.pool.withdraw(notice.job_id)
            else:
                engine.pool.set_inflight(*notice)

    task = asyncio.create_task(feed())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_worker_from_settings(settings: Settings, stop: asyncio.Event) -> None:
    """The whole worker process: the same composition as `stargraph serve`, running only the
    engine, and `/metrics` + `/healthz` when `worker_metrics_port` is set."""
    from stargraph.bootstrap import build_services

    services = await build_services(settings, worker=True, auto_migrate=True)
    try:
        async with _metrics_endpoint(services.scrape_metrics, settings):
            await services.run_worker(stop)
    finally:
        await services.aclose()


@contextlib.asynccontextmanager
async def _metrics_endpoint(
    scrape: Callable[[], Awaitable[bytes]], settings: Settings
) -> AsyncIterator[None]:
    """Serve this process's metrics on `worker_metrics_port` while the block runs."""
    if settings.worker_metrics_port is None:
        yield
        return

    async def metrics(_: Request) -> Response:
        return Response(await scrape(), media_type=CONTENT_TYPE)

    app = Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
    server = EmbeddedServer(
        app, host=settings.worker_metrics_host, port=settings.worker_metrics_port, lifespan="off"
    )
    serving = asyncio.create_task(server.serve())
    try:
        yield
    finally:
        server.should_exit = True
        await serving


def main() -> None:
    """`python -m stargraph.worker`: a worker process; SIGTERM/SIGINT stop it gracefully."""
    from stargraph.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    configure_logging(settings.log_level)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker_from_settings(settings, stop)

    run_loop(serve())


if __name__ == "__main__":
    main()
