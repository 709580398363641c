"""A whole engine on real parts: SQLite, Redis, simulated ComfyUIs on loopback, the worker.

async with engine_rig(redis, redis_prefix, tmp_path, backends=3) as rig:
    jobs = [await rig.submit(make_job(user)) for user in users]
    done = await rig.wait_terminal([j.id for j in jobs])
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from stargraph.broker.events import RedisEventBus
from stargraph.broker.queue import RedisJobQueue
from stargraph.comfy.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from stargraph.domain.capabilities import Capabilities
from stargraph.domain.control import JobControl
from stargraph.domain.jobs import TERMINAL, Job
from stargraph.domain.types import BackendId, JobId, UserId
from stargraph.engine.control import ComfyEngineControl
from stargraph.engine.gateway import ComfyGateway, comfy_socket
from stargraph.engine.slots import RedisSlotBook
from stargraph.storage import DiskImageFiles
from stargraph.store.images import TortoiseImageStore
from stargraph.store.jobs import TortoiseJobStore
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import AccountRow, JobRow, UserRow
from stargraph.worker import Engine, EngineConfig, EnginePorts, build_engine, run_worker
from tests.engine.factory import CHECKPOINT

FAST = SimulatorConfig(step_time=0.002, checkpoints=(CHECKPOINT,), preview_size=32)


async def make_user(ledger: TortoiseLedger, name: str, points: int = 10_000) -> UserId:
    row = await UserRow.create(username=name, username_key=name.lower(), password_hash="x")
    await AccountRow.create(user_id=row.id)
    await ledger.grant(UserId(row.id), points, "test points")
    return UserId(row.id)


@dataclass
class Rig:
    sims: list[SimulatorHandle]
    redis: Redis
    prefix: str
    ledger: TortoiseLedger
    jobs: TortoiseJobStore
    queue: RedisJobQueue
    events: RedisEventBus
    files: DiskImageFiles
    gateway: ComfyGateway
    config: EngineConfig
    engine: Engine | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def backends(self) -> list[BackendId]:
        return [BackendId(s.url) for s in self.sims]

    async def user(self, name: str, points: int = 10_000) -> UserId:
        return await make_user(self.ledger, name, points)

    def control(self) -> JobControl:
        """The cancel and reprioritise use cases, as an API process runs them."""
        return JobControl(
            jobs=self.jobs,
            queue=self.queue,
            events=self.events,
            engine=ComfyEngineControl(self.gateway, RedisSlotBook(self.redis, self.prefix)),
        )

    async def submit(self, job: Job) -> Job:
        """What the submission path does: hold + QUEUED row, then enqueue."""
        created, _ = await self.jobs.create_queued(job)
        await self.queue.enqueue(job.queue_entry)
        return created

    async def start_worker(self) -> Engine:
        ports = EnginePorts(
            redis=self.redis,
            queue=self.queue,
            jobs=self.jobs,
            images=TortoiseImageStore(),
            files=self.files,
            events=self.events,
            gateway=self.gateway,
            sockets=comfy_socket,
        )
        self.engine = build_engine(self.config, ports)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_worker(self.engine, self.stop))
        return self.engine

    async def stop_worker(self) -> None:
        if self.task is None:
            return
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        self.task = None

    async def wait_terminal(self, job_ids: Iterable[JobId], within_s: float = 60.0) -> list[Job]:
        """Every job once it is terminal (one COUNT per poll; fails after `within_s`)."""
        ids = list(job_ids)
        terminal = [s.value for s in TERMINAL]
        deadline = time.monotonic() + within_s
        while await JobRow.filter(id__in=ids, status__in=terminal).count() < len(ids):
            if self.task is not None and self.task.done():
                self.task.result()  # the worker crashed: show why
            if time.monotonic() > deadline:
                waiting = await JobRow.filter(id__in=ids).exclude(status__in=terminal)
                late = [(r.id, r.status) for r in waiting[:10]]
                raise AssertionError(f"jobs not finished in {within_s} s: {late}")
            await asyncio.sleep(0.05)
        found = [await self.jobs.get(j) for j in ids]
        return [j for j in found if j is not None]

    async def wait_status(self, job_id: JobId, *statuses: object, within_s: float = 30.0) -> Job:
        deadline = time.monotonic() + within_s
        while True:
            job = await self.jobs.get(job_id)
            if job is not None and job.status in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stayed {job and job.status}")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def engine_rig(
    redis: Redis,
    prefix: str,
    storage: Path,
    *,
    backends: int = 1,
    sim: SimulatorConfig = FAST,
    start: bool = True,
    **config: object,
) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        sims = [await stack.enter_async_context(running_simulator(sim)) for _ in range(backends)]
        urls = tuple(BackendId(s.url) for s in sims)
        gateway = ComfyGateway(urls)
        stack.push_async_callback(gateway.aclose)
        events = RedisEventBus(redis, redis, prefix)
        queue = RedisJobQueue(redis, prefix, events=events)
        stack.push_async_callback(queue.aclose)
        ledger = TortoiseLedger()
        settings = dict(
            backends=urls,
            redis_prefix=prefix,
            lease_s=2.0,
            housekeeping_s=0.2,
            listener_tick_s=0.5,
            fallback=Capabilities((CHECKPOINT,), ("euler",), ("normal",)),
        )
        settings.update(config)
        rig = Rig(
            sims=sims,
            redis=redis,
            prefix=prefix,
            ledger=ledger,
            jobs=TortoiseJobStore(ledger),
            queue=queue,
            events=events,
            files=DiskImageFiles(storage),
            gateway=gateway,
            config=EngineConfig(**settings),  # type: ignore[arg-type]
        )
        stack.push_async_callback(rig.stop_worker)
        if start:
            await rig.start_worker()
        yield rig
