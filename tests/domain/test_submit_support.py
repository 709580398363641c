"""The submission world the submit and cancel tests share: real SQLite, real Redis (queue,
event bus, rate limiter, translation cache), the real Ollama client against the fake Ollama.

No tests here; `world(...)` builds everything for one test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import fakeredis
from redis.asyncio import ConnectionPool, Redis

from stargraph.broker.cache import RedisTranslationCache
from stargraph.broker.events import RedisEventBus
from stargraph.broker.limits import RateLimiter
from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.capabilities import Capabilities
from stargraph.domain.control import JobControl
from stargraph.domain.events import JobEvent
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.ledger import Balance
from stargraph.domain.params import SubmitRequest
from stargraph.domain.submit import SubmitPolicy, Submitter
from stargraph.domain.translation import Fallback, PromptTranslator
from stargraph.domain.types import Principal, Role, UserId
from stargraph.domain.workflows import WorkflowCatalog
from stargraph.ollama import OllamaTranslator
from stargraph.settings import PROJECT_ROOT
from stargraph.store.jobs import TortoiseJobStore
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import AccountRow, JobRow, UserRow
from tests.fakes.ollama import FakeOllama, running_fake_ollama

PRICE = 10
MODEL = "sd15.safetensors"
CAPABILITIES = Capabilities((MODEL, "sdxl.safetensors"), ("euler", "dpmpp_2m"), ("normal",))
CATALOG = WorkflowCatalog.load(PROJECT_ROOT / "workflows")
PREFIX = CATALOG.get("t2i").prompt_prefix
SUFFIX = CATALOG.get("t2i").negative_suffix
NO_EVENT = "0-0"


def twin(client: Redis, *, blocking: bool) -> Redis:
    """Another client on the same Redis as `client` (a blocking one for pub/sub)."""
    kwargs = client.connection_pool.connection_kwargs
    if "server" in kwargs:  # the in-process Redis
        pool = ConnectionPool(
            connection_class=fakeredis.aioredis.FakeAsyncRedisConnection, server=kwargs["server"]
        )
        return Redis(connection_pool=pool)
    return Redis(
        host=kwargs["host"],
        port=kwargs["port"],
        db=kwargs.get("db", 0),
        socket_timeout=None if blocking else 10.0,
    )


class SimulatedCrash(Exception):
    """The process 'died' right after the job row and its hold were committed."""


class CrashBeforeEnqueue:
    """The real queue, except that enqueueing fails before touching Redis."""

    def __init__(self, queue: RedisJobQueue) -> None:
        self._queue = queue

    async def enqueue_announced(self, job: object, event: object) -> int:
        raise SimulatedCrash("killed between the commit and the enqueue")

    def __getattr__(self, name: str) -> object:
        return getattr(self._queue, name)


@dataclass
class RecordingEngine:
    """EngineControl that records what it was asked to stop (the real one is the engine's)."""

    cancelled: list[Job] = field(default_factory=list)
    withdrawn: list[Job] = field(default_factory=list)
    also: object = None  # an async callable run inside cancel, to play a race

    async def cancel(self, job: Job) -> None:
        self.cancelled.append(job)
        if self.also is not None:
            await self.also(job)  # type: ignore[operator]

    async def withdraw(self, job: Job) -> None:
        self.withdrawn.append(job)


@dataclass
class World:
    submitter: Submitter
    crashing: Submitter  # its enqueue "crashes" after the commit
    control: JobControl
    engine: RecordingEngine
    jobs: TortoiseJobStore
    ledger: TortoiseLedger
    queue: RedisJobQueue
    bus: RedisEventBus
    ollama: FakeOllama
    redis: Redis
    prefix: str

    async def user(self, points: int = 100, *, admin: bool = False) -> Principal:
        name = f"u{uuid.uuid4().hex[:10]}"
        role = Role.ADMIN if admin else Role.USER
        row = await UserRow.create(
            username=name, username_key=name, password_hash="x", role=role.value
        )
        await AccountRow.create(user=row)
        if points:
            await self.ledger.grant(UserId(row.id), points, "test")
        return Principal(UserId(row.id), name, role)

    async def submit(self, who: Principal, prompt: str = "a red fox", **kw: object) -> Job:
        submitted = await self.submitter.submit(who, SubmitRequest(prompt=prompt, **kw))  # type: ignore[arg-type]
        return submitted.job

    async def snapshot(self, who: Principal) -> tuple[int, Balance, int, str, int]:
        """What a refused request must leave as it was: the caller's rows, balance, the
        queue, the caller's events, and the calls made to Ollama."""
        return (
            await JobRow.filter(user_id=who.user_id).count(),
            await self.ledger.balance(who.user_id),
            await self.queue.length(),
            await self.bus.last_cursor(who.user_id),
            len(self.ollama.chat_bodies()),
        )

    async def events(self, who: Principal, count: int) -> list[JobEvent]:
        """The caller's first `count` events, replayed from the start of its stream."""
        found: list[JobEvent] = []
        async with asyncio.timeout(10):  # a broken bus fails instead of hanging
            async for event in self.bus.follow_user(who.user_id, after=NO_EVENT):
                found.append(event)
                if len(found) == count:
                    return found
        return found

    async def order(self) -> list[str]:
        """Every waiting job id, first to be claimed first."""
        waiting = await self.jobs.queued()
        positions = await self.queue.positions([j.job_id for j in waiting])
        placed = sorted((p, j) for j, p in positions.items() if p is not None)
        assert [p for p, _ in placed] == list(range(1, len(placed) + 1))
        return [j for _, j in placed]

    async def status(self, job: Job) -> JobStatus:
        current = await self.jobs.get(job.id)
        assert current is not None
        return current.status


@asynccontextmanager
async def world(
    redis: Redis,
    prefix: str,
    *,
    ollama: str = "normal",
    fallback: Fallback = "error",
    submits_per_minute: int = 30,
    max_queued: int = 20,
) -> AsyncIterator[World]:
    """Everything a submission touches; the `db` fixture must be open."""
    listen, commands = twin(redis, blocking=True), twin(redis, blocking=False)
    async with running_fake_ollama(ollama) as fake:
        model = OllamaTranslator(fake.url, "qwen2.5:0.5b", timeout_s=5)
        translator = PromptTranslator(model, RedisTranslationCache(redis, prefix), fallback)
        ledger = TortoiseLedger()
        jobs = TortoiseJobStore(ledger)
        bus = RedisEventBus(commands, listen, prefix)
        queue = RedisJobQueue(redis, prefix, events=bus)
        engine = RecordingEngine()
        policy = SubmitPolicy(PRICE, submits_per_minute, max_queued, MODEL)

        def submitter(queue: object) -> Submitter:
            return Submitter(
                jobs=jobs,
                queue=queue,  # type: ignore[arg-type]
                limiter=RateLimiter(redis, prefix),
                translator=translator,
                catalog=CATALOG,
                capabilities=lambda: CAPABILITIES,
                policy=policy,
            )

        control = JobControl(jobs=jobs, queue=queue, events=bus, engine=engine)
        try:
            async with bus:
                yield World(
                    submitter(queue),
                    submitter(CrashBeforeEnqueue(queue)),
                    control,
                    engine,
                    jobs,
                    ledger,
                    queue,
                    bus,
                    fake,
                    redis,
                    prefix,
                )
        finally:
            await queue.aclose()
            await model.aclose()
            keys = [k async for k in redis.scan_iter(match=f"{{{prefix}}}*")]
            keys += [k async for k in redis.scan_iter(match=f"{prefix}:*")]
            if keys:
                await redis.delete(*keys)
            await listen.aclose()
            await commands.aclose()


def now() -> datetime:
    return datetime.now(UTC)
