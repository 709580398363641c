"""Dispatch benchmark: how busy StarGraph keeps the GPUs, beside the original polling design.

    python bench/dispatch.py                      # 200 jobs of 1 s over 2 simulated backends
    python bench/dispatch.py --jobs 40 --step-time 0.01

Both runs use fresh simulated ComfyUI backends on loopback, a SQLite file and Redis (a real
server on 127.0.0.1:6379 when one listens, else the in-process one). Each job is 20 sampler
steps of `--step-time` seconds (1 s by default).

- StarGraph: the real worker (event-driven dispatcher, 2 jobs in flight per backend, the
  listener freeing a slot the moment ComfyUI reports the end).
- Baseline, the way the original system dispatched: once a second, for each backend whose
  queue is empty (`GET /prompt`), pop the best job (ZPOPMIN) and POST it.

Figures, from the simulators' own records (monotonic clock, same process):
- busy: engine time ÷ wall time per backend, wall = first start to last finish there;
- gap: time from a prompt's end on a backend to the next POST that backend receives
  (the moment a slot is freed to the moment the next job arrives), p50 / p99.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stargraph.broker.connection import connect_redis  # noqa: E402
from stargraph.broker.events import RedisEventBus  # noqa: E402
from stargraph.broker.queue import RedisJobQueue  # noqa: E402
from stargraph.comfy.simulator import (  # noqa: E402
    SimulatorConfig,
    SimulatorHandle,
    running_simulator,
)
from stargraph.domain.capabilities import Capabilities  # noqa: E402
from stargraph.domain.jobs import Job, JobParams, JobStatus, TranslationState  # noqa: E402
from stargraph.domain.queue import QueuedJob  # noqa: E402
from stargraph.domain.types import BackendId, Priority, UserId, new_job_id  # noqa: E402
from stargraph.domain.workflows import WorkflowCatalog  # noqa: E402
from stargraph.engine.gateway import ComfyGateway, comfy_socket  # noqa: E402
from stargraph.storage import DiskImageFiles  # noqa: E402
from stargraph.store.db import close_db, init_db, migrate  # noqa: E402
from stargraph.store.images import TortoiseImageStore  # noqa: E402
from stargraph.store.jobs import TortoiseJobStore  # noqa: E402
from stargraph.store.ledger import TortoiseLedger  # noqa: E402
from stargraph.store.models import AccountRow, JobRow, UserRow  # noqa: E402
from stargraph.worker import EngineConfig, EnginePorts, build_engine, run_worker  # noqa: E402

CHECKPOINT = "bench.safetensors"
STEPS = 20
USERS = 4
CATALOG = WorkflowCatalog.load(ROOT / "workflows")


@dataclass
class Figures:
    name: str
    wall_s: float
    busy: list[float]  # per backend
    gaps_ms: list[float]

    def row(self) -> str:
        gaps = sorted(self.gaps_ms)
        p50 = statistics.median(gaps) if gaps else float("nan")
        p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] if gaps else float("nan")
        busy = " ".join(f"{b * 100:6.2f}%" for b in self.busy)
        return (
            f"{self.name:<10} {self.wall_s:8.1f} s   busy {busy}   "
            f"gap p50 {p50:8.2f} ms  p99 {p99:8.2f} ms"
        )


def measure(name: str, sims: list[SimulatorHandle]) -> Figures:
    busy, gaps, starts, ends = [], [], [], []
    for sim in sims:
        done = [r for r in sim.records if r.started_at is not None and r.finished_at is not None]
        first = min(r.started_at for r in done)  # type: ignore[type-var]
        last = max(r.finished_at for r in done)  # type: ignore[type-var]
        starts.append(first)
        ends.append(last)
        busy.append(sim.simulator.busy_seconds(first, last) / (last - first))
        posts = sorted(sim.simulator.post_times)
        for record in done:
            later = [p for p in posts if p >= record.finished_at]  # type: ignore[operator]
            if later:
                gaps.append((later[0] - record.finished_at) * 1000)  # type: ignore[operator]
    return Figures(name, max(ends) - min(starts), busy, gaps)


def job_for(user: UserId, index: int) -> Job:
    job_id = new_job_id()
    params = JobParams(
        prompt=f"bench image {index}",
        negative_prompt="",
        count=1,
        width=64,
        height=64,
        steps=STEPS,
        cfg=7.0,
        sampler="euler",
        scheduler="normal",
        model=CHECKPOINT,
        seed=index + 1,
        workflow="t2i",
        priority=Priority.NORMAL,
    )
    return Job(
        id=job_id,
        user_id=user,
        status=JobStatus.QUEUED,
        params=params,
        positive_prompt=params.prompt,
        effective_negative_prompt="",
        translated_prompt=None,
        translation=TranslationState.NOT_NEEDED,
        cost=10,
        created_at=datetime.now(UTC),
        graph=CATALOG.render("t2i", job_id, params, params.prompt, ""),
    )


async def make_jobs(jobs: TortoiseJobStore, ledger: TortoiseLedger, count: int) -> list[Job]:
    users = []
    for i in range(USERS):
        name = f"bench-{uuid.uuid4().hex[:8]}-{i}"
        row = await UserRow.create(username=name, username_key=name, password_hash="x")
        await AccountRow.create(user_id=row.id)
        await ledger.grant(UserId(row.id), 10 * count, "bench")
        users.append(UserId(row.id))
    made = []
    for i in range(count):
        job, _ = await jobs.create_queued(job_for(users[i % USERS], i))
        made.append(job)
    return made


async def wait_all_finished(total: int, poll_s: float = 0.25) -> None:
    """The benchmark's own progress check (not the engine's): count terminal rows."""
    terminal = [s.value for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)]
    while True:
        if await JobRow.filter(status__in=terminal).count() >= total:
            return
        await asyncio.sleep(poll_s)


async def run_stargraph(args: argparse.Namespace, redis_url: str | None, storage: Path) -> Figures:
    sim_config = SimulatorConfig(
        step_time=args.step_time, checkpoints=(CHECKPOINT,), previews=False
    )
    async with running_simulator(sim_config) as a, running_simulator(sim_config) as b:
        sims = [a, b]
        redis = connect_redis(redis_url)
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        queue = RedisJobQueue(redis, prefix)
        gateway = ComfyGateway(tuple(BackendId(s.url) for s in sims))
        ledger = TortoiseLedger()
        jobs = TortoiseJobStore(ledger)
        made = await make_jobs(jobs, ledger, args.jobs)
        for job in made:
            await queue.enqueue(QueuedJob(job.id, job.user_id, job.params.priority))
        config = EngineConfig(
            backends=tuple(BackendId(s.url) for s in sims),
            redis_prefix=prefix,
            fallback=Capabilities((CHECKPOINT,), ("euler",), ("normal",)),
        )
        ports = EnginePorts(
            redis=redis,
            queue=queue,
            jobs=jobs,
            images=TortoiseImageStore(),
            files=DiskImageFiles(storage),
            events=RedisEventBus(redis, redis, prefix),
            gateway=gateway,
            sockets=comfy_socket,
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(build_engine(config, ports), stop))
        await wait_all_finished(args.jobs)
        stop.set()
        await worker
        await queue.aclose()
        await gateway.aclose()
        await redis.aclose()
        return measure("stargraph", sims)


async def run_baseline(args: argparse.Namespace, redis_url: str | None) -> Figures:
    """Pop once a second per idle backend, like the original scheduler."""
    sim_config = SimulatorConfig(
        step_time=args.step_time, checkpoints=(CHECKPOINT,), previews=False
    )
    async with running_simulator(sim_config) as a, running_simulator(sim_config) as b:
        sims = [a, b]
        redis = connect_redis(redis_url)
        key = f"bench{uuid.uuid4().hex[:8]}:zset"
        graphs = {}
        for i in range(args.jobs):
            job = job_for(UserId(1), i)
            graphs[job.id] = job.graph
            await redis.zadd(key, {job.id: i})
        async with httpx.AsyncClient(timeout=30) as http:
            while len(graphs) > 0 or await _any_busy(http, sims):
                tick = time.monotonic()
                for sim in sims:
                    if graphs and await _idle(http, sim):
                        popped = await redis.zpopmin(key)
                        job_id = popped[0][0].decode()
                        prompt = {"prompt": graphs.pop(job_id), "prompt_id": job_id}
                        await http.post(f"{sim.url}/prompt", json=prompt)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        await redis.delete(key)
        await redis.aclose()
        return measure("baseline", sims)


async def _idle(http: httpx.AsyncClient, sim: SimulatorHandle) -> bool:
    answer = (await http.get(f"{sim.url}/prompt")).json()
    return int(answer["exec_info"]["queue_remaining"]) == 0


async def _any_busy(http: httpx.AsyncClient, sims: list[SimulatorHandle]) -> bool:
    return not all([await _idle(http, s) for s in sims])


def _sim_config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(step_time=args.step_time, checkpoints=(CHECKPOINT,), previews=False)


def _redis_url() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return "redis://127.0.0.1:6379/0"
    except OSError:
        return None


async def main(args: argparse.Namespace) -> None:
    redis_url = _redis_url()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite://{tmp}/bench.db"
        await init_db(db_url)
        await migrate(db_url)
        try:
            ours = await run_stargraph(args, redis_url, Path(tmp) / "images")
        finally:
            await close_db()
    base = await run_baseline(args, redis_url)
    job_s = STEPS * args.step_time
    print(f"{args.jobs} jobs of {job_s:g} s over 2 simulated backends "
          f"(Redis: {redis_url or 'in-process'}, SQLite file)")  # fmt: skip
    print(ours.row())
    print(base.row())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--step-time", type=float, default=0.05, help="seconds per step (×20)")
    asyncio.run(main(parser.parse_args()))
