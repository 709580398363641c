"""The composition root: every adapter and use case built from one Settings, and closed again.

`build_services(settings)` opens the database, Redis and the event bus, wires the domain use
cases to their adapters and returns them as one `Services` value; `aclose()` closes
everything in reverse order. Only the app, the worker and the CLI see `Services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from stargraph.broker.cache import RedisTranslationCache
from stargraph.broker.connection import connect_redis
from stargraph.broker.events import RedisEventBus
from stargraph.broker.limits import RateLimiter
from stargraph.broker.queue import RedisJobQueue
from stargraph.comfy.sim_config import SimulatorConfig
from stargraph.comfy.simulator import SimulatorHandle, running_simulator
from stargraph.domain.capabilities import Capabilities
from stargraph.domain.control import JobControl
from stargraph.domain.gallery import Gallery, LinkSigner
from stargraph.domain.submit import SubmitPolicy, Submitter
from stargraph.domain.translation import PromptTranslator, TranslationStats
from stargraph.domain.users import username_key
from stargraph.domain.workflows import WorkflowCatalog
from stargraph.engine.capabilities import CapabilitiesBook
from stargraph.engine.gateway import ComfyGateway, comfy_socket
from stargraph.metrics import Metrics
from stargraph.ollama import OllamaTranslator
from stargraph.settings import Settings
from stargraph.status import EngineView, FinishedRuns, jobs_by_status, ping_database
from stargraph.storage import DiskImageFiles
from stargraph.store.db import close_db, engine_of, init_db, migrate
from stargraph.store.images import TortoiseImageStore
from stargraph.store.jobs import TortoiseJobStore
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.users import UserService
from stargraph.worker import Engine, EngineConfig, EnginePorts, build_engine, run_worker

log = logging.getLogger("stargraph")

_PROBES_AT_ONCE = 16

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    """`serve --simulate N`: N in-process simulated ComfyUI backends."""

    backends: int = 1
    step_time_s: float = 0.05
    config: SimulatorConfig | None = None  # tests: full control (manual steps, faults)


@dataclass(slots=True)
class Services:
    """Everything one process uses, built once. Fields are ports and use cases."""

    settings: Settings
    redis: Redis
    metrics: Metrics
    ledger: TortoiseLedger
    job_store: TortoiseJobStore
    image_store: TortoiseImageStore
    files: DiskImageFiles
    queue: RedisJobQueue
    events: RedisEventBus
    limiter: RateLimiter
    translator: PromptTranslator
    catalog: WorkflowCatalog
    capabilities_book: CapabilitiesBook
    users: UserService
    submitter: Submitter
    control: JobControl
    gallery: Gallery
    signer: LinkSigner
    engine: Engine
    engine_view: EngineView
    _stack: AsyncExitStack = field(repr=False)
    simulators: list[SimulatorHandle] = field(default_factory=list)
    _finished_runs: FinishedRuns = field(default_factory=FinishedRuns, repr=False)

    def capabilities(self) -> Capabilities:
        return self.capabilities_book.current()

    def readiness_checks(self) -> dict[str, Check]:
        return {
            "database": self._check_database,
            "redis": self._check_redis,
            "backends": self._check_backends,
        }

    async def _check_database(self) -> None:
        await ping_database()

    async def _check_redis(self) -> None:
        await self.redis.ping()

    async def _check_backends(self) -> None:
        healthy = [b for b in await self.engine_view.backends() if b.healthy]
        if not healthy:
            raise RuntimeError("no healthy ComfyUI backend")

    async def scrape_metrics(self) -> bytes:
        """Refresh the gauges of shared state, then render every metric."""
        backends = await self.engine_view.backends()
        self.metrics.refresh(
            queue_length=await self.queue.length(),
            jobs_by_status=await jobs_by_status(),
            backends=backends,
        )
        self.metrics.observe_runs(await self._finished_runs.since_last())
        return self.metrics.render()

    async def run_worker(self, stop: asyncio.Event) -> None:
        await run_worker(self.engine, stop)

    async def aclose(self) -> None:
        await self._stack.aclose()


async def _start_simulators(
    stack: AsyncExitStack, settings: Settings, simulate: SimulateOptions | None
) -> tuple[Settings, list[SimulatorHandle]]:
    """Start the in-process simulated backends and point the settings at them."""
    if simulate is None or simulate.backends <= 0:
        return settings, []
    config = simulate.config or SimulatorConfig(step_time=simulate.step_time_s)
    handles = [
        await stack.enter_async_context(running_simulator(config)) for _ in range(simulate.backends)
    ]
    urls = [h.url for h in handles]
    log.info("simulating %d ComfyUI backend(s): %s", len(urls), ", ".join(urls))
    update = {"comfyui_urls": [*settings.comfyui_urls, *urls]}
    return settings.model_copy(update=update), handles


async def _open_database(stack: AsyncExitStack, settings: Settings, auto_migrate: bool) -> None:
    await init_db(settings.database_url)
    stack.push_async_callback(close_db)
    if auto_migrate and engine_of(settings.database_url) == "sqlite":
        applied = await migrate(settings.database_url)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))


def _open_redis(stack: AsyncExitStack, settings: Settings) -> tuple[Redis, Redis]:
    redis = connect_redis(settings.redis_url)
    listen = connect_redis(settings.redis_url, blocking=True)
    stack.push_async_callback(redis.aclose)
    stack.push_async_callback(listen.aclose)
    return redis, listen


async def _link_secret(redis: Redis, settings: Settings) -> bytes:
    """The image-link key: configured, or made once and shared through Redis, so links
    signed by one API process open on every other."""
    if settings.secret_key:
        return settings.secret_key.encode()
    key = f"{{{settings.redis_prefix}}}:link-secret"
    await redis.set(key, secrets.token_hex(32), nx=True)
    value = await redis.get(key)
    return value if isinstance(value, bytes) else str(value).encode()


async def _translator(
    stack: AsyncExitStack, settings: Settings, redis: Redis, metrics: Metrics, demo: bool
) -> PromptTranslator:
    ollama = OllamaTranslator(
        settings.ollama_url,
        settings.ollama_model,
        settings.ollama_timeout_s,
        on_latency=lambda seconds, ok: metrics.translation_time.observe(seconds),
    )
    stack.push_async_callback(ollama.aclose)
    fallback = settings.translation_fallback
    if demo and fallback == "error" and not await ollama.probe():
        fallback = "passthrough"
        log.warning(
            "Ollama is not reachable at %s (or lacks %s): Chinese prompts go untranslated "
            "(recorded on each job) in this simulated run",
            settings.ollama_url,
            settings.ollama_model,
        )
    stats = TranslationStats()
    metrics.watch_translation(stats)
    return PromptTranslator(
        ollama,
        RedisTranslationCache(redis, settings.redis_prefix),
        fallback,
        timeout_s=settings.ollama_timeout_s,
        stats=stats,
    )


def _in_background(
    stack: AsyncExitStack,
    name: str,
    work: Callable[[asyncio.Event], Coroutine[object, object, None]],
) -> None:
    """Run `work(stop)` as a task until the services close."""
    stop = asyncio.Event()
    task = asyncio.create_task(work(stop), name=name)

    async def finish() -> None:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(finish)


def _follow_capabilities(stack: AsyncExitStack, engine: Engine) -> None:
    """Keep the offer fresh in a process whose worker does not run: read what the workers
    learn from the backends (their listeners ask each backend on connecting)."""
    _in_background(
        stack,
        "stargraph-capabilities",
        lambda stop: engine.capabilities.follow_board(engine.config.backends, stop),
    )


async def build_services(
    settings: Settings,
    *,
    simulate: SimulateOptions | None = None,
    auto_migrate: bool = False,
    worker: bool = False,
) -> Services:
    """Open and wire everything; on failure, close what was opened and re-raise."""
    stack = AsyncExitStack()
    try:
        return await _build(stack, settings, simulate, auto_migrate, worker)
    except BaseException:
        await stack.aclose()
        raise


@dataclass(frozen=True, slots=True)
class _Adapters:
    redis: Redis
    events: RedisEventBus
    ledger: TortoiseLedger
    files: DiskImageFiles
    jobs: TortoiseJobStore
    images: TortoiseImageStore
    queue: RedisJobQueue
    limiter: RateLimiter


async def _adapters(stack: AsyncExitStack, settings: Settings, auto_migrate: bool) -> _Adapters:
    await _open_database(stack, settings, auto_migrate)
    redis, listen = _open_redis(stack, settings)
    events = RedisEventBus(redis, listen, settings.redis_prefix)
    await events.start()
    stack.push_async_callback(events.aclose)
    ledger = TortoiseLedger()
    queue = RedisJobQueue(redis, settings.redis_prefix, listener=listen, events=events)
    stack.push_async_callback(queue.aclose)  # its wake-up listener stops before Redis closes
    return _Adapters(
        redis=redis,
        events=events,
        ledger=ledger,
        files=DiskImageFiles(Path(settings.storage_dir)),
        jobs=TortoiseJobStore(ledger),
        images=TortoiseImageStore(),
        queue=queue,
        limiter=RateLimiter(redis, settings.redis_prefix),
    )


async def _engine(
    stack: AsyncExitStack,
    settings: Settings,
    a: _Adapters,
    metrics: Metrics,
    *,
    worker: bool,
    simulated: bool,
) -> Engine:
    """The engine's parts; this process runs them only with `worker` (else it only cancels
    through them, reads the board, and keeps the capabilities fresh)."""
    config = EngineConfig.from_settings(settings)
    gateway = ComfyGateway(config.backends)
    stack.push_async_callback(gateway.aclose)
    ports = EnginePorts(
        a.redis, a.queue, a.jobs, a.images, a.files, a.events, gateway, comfy_socket
    )
    engine = build_engine(config, ports, refill_gap=metrics.dispatch_gap.observe)
    if not worker:
        _follow_capabilities(stack, engine)
    if not simulated:
        await _say_where_backends_are(engine, gateway)
    return engine


def _submitter(
    settings: Settings,
    a: _Adapters,
    translator: PromptTranslator,
    catalog: WorkflowCatalog,
    engine: Engine,
) -> Submitter:
    return Submitter(
        jobs=a.jobs,
        queue=a.queue,
        limiter=a.limiter,
        translator=translator,
        catalog=catalog,
        capabilities=engine.capabilities.current,
        policy=SubmitPolicy(
            price_per_image=settings.price_per_image,
            submits_per_minute=settings.submits_per_minute,
            max_queued_per_user=settings.max_queued_per_user,
            default_model=settings.default_model,
        ),
    )


async def _build(
    stack: AsyncExitStack,
    settings: Settings,
    simulate: SimulateOptions | None,
    auto_migrate: bool,
    worker: bool,
) -> Services:
    settings, simulators = await _start_simulators(stack, settings, simulate)
    a = await _adapters(stack, settings, auto_migrate)
    metrics = Metrics()
    engine = await _engine(
        stack, settings, a, metrics, worker=worker, simulated=simulate is not None
    )
    catalog = WorkflowCatalog.load(settings.workflows_dir)
    translator = await _translator(stack, settings, a.redis, metrics, demo=simulate is not None)
    return Services(
        settings=settings,
        redis=a.redis,
        metrics=metrics,
        ledger=a.ledger,
        job_store=a.jobs,
        image_store=a.images,
        files=a.files,
        queue=a.queue,
        events=a.events,
        limiter=a.limiter,
        translator=translator,
        catalog=catalog,
        capabilities_book=engine.capabilities,
        users=_users(settings, a.ledger, a.limiter),
        submitter=_submitter(settings, a, translator, catalog, engine),
        control=JobControl(jobs=a.jobs, queue=a.queue, events=a.events, engine=engine.control),
        gallery=Gallery(a.images, a.files),
        signer=LinkSigner(await _link_secret(a.redis, settings)),
        engine=engine,
        engine_view=EngineView(engine, local=worker),
        _stack=stack,
        simulators=simulators,
    )


async def _say_where_backends_are(engine: Engine, gateway: ComfyGateway) -> None:
    """One log line when no ComfyUI answers: the service runs, and jobs wait for one. Asks
    a few backends at a time and stops at the first answer."""
    backends = engine.config.backends
    if not backends:
        log.warning("no ComfyUI configured (STARGRAPH_COMFYUI_URLS); jobs wait in the queue")
        return
    for start in range(0, len(backends), _PROBES_AT_ONCE):
        answers = await asyncio.gather(
            *(gateway.capabilities(b) for b in backends[start : start + _PROBES_AT_ONCE]),
            return_exceptions=True,
        )
        if not all(isinstance(a, BaseException) for a in answers):
            return
    named = ", ".join(backends[:3]) + (
        f" and {len(backends) - 3} more" if len(backends) > 3 else ""
    )
    log.warning(
        "no ComfyUI reachable at %s; the service runs and jobs wait until one answers", named
    )


def _users(settings: Settings, ledger: TortoiseLedger, limiter: RateLimiter) -> UserService:
    limit = settings.login_attempts_per_minute

    async def login_guard(username: str, client: str | None) -> None:
        """Throttle password guessing per account name and per client address."""
        await limiter.hit(f"login:user:{username_key(username)}", limit, 60.0)
        if client:
            await limiter.hit(f"login:client:{client}", limit * 5, 60.0)

    return UserService(
        ledger,
        settings.signup_points,
        settings.token_ttl_s,
        open_registration=settings.open_registration,
        login_guard=login_guard,
    )
