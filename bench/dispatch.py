"""Dispatch benchmark: how busy StarGraph keeps the GPUs, beside the original polling design.

    python bench/dispatch.py                      # 200 jobs of 1 s over 2 simulated backends
    python bench/dispatch.py --jobs 40 --step-time 0.01
    python bench/dispatch.py --step-jitter 0.02   # each step's time spread by 2 % (sd)

Both runs use fresh simulated ComfyUI backends, each in its own process on loopback (as a
real ComfyUI would be), a SQLite file (or `--database-url`) and Redis (a real server on
127.0.0.1:6379 when one listens, else the in-process one). Each job is 20 sampler steps of
`--step-time` seconds (1 s by default). By default every step takes exactly that long, so
the two backends, filled at the same moment, end their jobs within milliseconds of each other
for the whole run, and the refills of both compete for the machine's CPUs at once; separate
GPUs drift apart. `--step-jitter` spreads each step's time (a normal spread, as the
recordings' steps vary) to measure that case.

- StarGraph: the real worker (event-driven dispatcher, 2 jobs in flight per backend, the
  next one claimed and held on standby while the running one takes its last steps, the
  listener freeing a slot, and so sending the standby, the moment ComfyUI reports the end).
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
import bisect
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import forget_prefix, machine, median, percentile, wake_cost_ms  # noqa: E402

from stargraph.broker.connection import connect_redis  # noqa: E402
from stargraph.broker.events import RedisEventBus  # noqa: E402
from stargraph.broker.queue import RedisJobQueue  # noqa: E402
from stargraph.domain.capabilities import Capabilities  # noqa: E402
from stargraph.domain.jobs import Job, JobParams, JobStatus, TranslationState  # noqa: E402
from stargraph.domain.queue import QueuedJob  # noqa: E402
from stargraph.domain.types import BackendId, Priority, UserId, new_job_id  # noqa: E402
from stargraph.domain.workflows import WorkflowCatalog  # noqa: E402
from stargraph.engine.gateway import ComfyGateway, comfy_socket  # noqa: E402
from stargraph.runtime import run_loop  # noqa: E402
from stargraph.serve import freeze_startup_heap  # noqa: E402
from stargraph.storage import DiskImageFiles  # noqa: E402
from stargraph.store.db import (  # noqa: E402
    close_db,
    create_database,
    drop_database,
    init_db,
    migrate,
)
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
    inside_ms: list[float] | None = None  # the same gap as the worker itself measures it

    def row(self) -> str:
        p50, p99 = median(self.gaps_ms), percentile(self.gaps_ms, 99)
        busy = " ".join(f"{b * 100:6.2f}%" for b in self.busy)
        line = (
            f"{self.name:<10} {self.wall_s:8.1f} s   busy {busy}   "
            f"gap p50 {p50:8.2f} ms  p99 {p99:8.2f} ms"
        )
        if self.inside_ms:
            p50, p99 = median(self.inside_ms), percentile(self.inside_ms, 99)
            line += f"\n{'':<10} of which inside the worker (slot freed → POST begins): "
            line += f"p50 {p50:.2f} ms  p99 {p99:.2f} ms"
        return line


def measure(name: str, records: list[dict[str, Any]]) -> Figures:
    """`records`: each backend's `/sim/records` answer (monotonic clock, shared on Linux)."""
    busy, gaps, starts, ends = [], [], [], []
    for answer in records:
        done = [r for r in answer["records"] if r["started_at"] and r["finished_at"]]
        first = min(r["started_at"] for r in done)
        last = max(r["finished_at"] for r in done)
        starts.append(first)
        ends.append(last)
        engine = sum(min(r["finished_at"], last) - max(r["started_at"], first) for r in done)
        busy.append(engine / (last - first))
        posts = sorted(answer["post_times"])
        for record in done:
            i = bisect.bisect_left(posts, record["finished_at"])
            if i < len(posts):
                gaps.append((posts[i] - record["finished_at"]) * 1000)
    return Figures(name, max(ends) - min(starts), busy, gaps)


class Simulators:
    """Simulated ComfyUI backends, each served by its own Python process."""

    def __init__(self, count: int, step_time: float, step_jitter: float) -> None:
        self.count = count
        self.step_time = step_time
        self.step_jitter = step_jitter
        self.urls: list[str] = []
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Simulators:
        for index in range(self.count):
            port = _free_port()
            code = (
                "import asyncio\n"
                "from stargraph.comfy.simulator import SimulatorConfig, serve_simulator\n"
                f"config = SimulatorConfig(step_time={self.step_time!r}, "
                f"step_jitter={self.step_jitter!r}, jitter_seed={index}, "
                f"checkpoints=({CHECKPOINT!r},), previews=False)\n"
                f"asyncio.run(serve_simulator('127.0.0.1', {port}, config))\n"
            )
            self._procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", code, cwd=ROOT, stderr=asyncio.subprocess.DEVNULL
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient() as http:
            for url in self.urls:
                await _until_up(http, url)
        return self

    async def records(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            return [(await http.get(f"{url}/sim/records")).json() for url in self.urls]

    async def __aexit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            await asyncio.wait_for(proc.wait(), 10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until_up(http: httpx.AsyncClient, url: str) -> None:
    for _ in range(400):
        try:
            if (await http.get(f"{url}/prompt")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)  # start-up only
    raise RuntimeError(f"simulator {url} did not start")


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
    async with Simulators(2, args.step_time, args.step_jitter) as sims:
        backends = tuple(BackendId(url) for url in sims.urls)
        redis = connect_redis(redis_url)
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        events = RedisEventBus(redis, redis, prefix)
        queue = RedisJobQueue(redis, prefix, events=events)
        gateway = ComfyGateway(backends)
        ledger = TortoiseLedger()
        jobs = TortoiseJobStore(ledger)
        made = await make_jobs(jobs, ledger, args.jobs)
        for job in made:
            await queue.enqueue(QueuedJob(job.id, job.user_id, job.params.priority))
        config = EngineConfig(
            backends=backends,
            redis_prefix=prefix,
            fallback=Capabilities((CHECKPOINT,), ("euler",), ("normal",)),
        )
        ports = EnginePorts(
            redis=redis,
            queue=queue,
            jobs=jobs,
            images=TortoiseImageStore(),
            files=DiskImageFiles(storage),
            events=events,
            gateway=gateway,
            sockets=comfy_socket,
        )
        stop = asyncio.Event()
        inside: list[float] = []  # the worker's own view: slot freed → POST begins
        engine = build_engine(config, ports, refill_gap=lambda s: inside.append(s * 1000))
        freeze_startup_heap()  # as `stargraph worker` does
        worker = asyncio.create_task(run_worker(engine, stop))
        await wait_all_finished(args.jobs)
        stop.set()
        await worker
        await queue.aclose()
        await gateway.aclose()
        await redis.aclose()
        if redis_url is not None:  # the queue, the events, the slots
            await forget_prefix(redis_url, prefix)
        figures = measure("stargraph", await sims.records())
        figures.inside_ms = inside
        return figures


async def run_baseline(args: argparse.Namespace, redis_url: str | None) -> Figures:
    """Pop once a second per idle backend, like the original scheduler."""
    async with Simulators(2, args.step_time, args.step_jitter) as sims:
        redis = connect_redis(redis_url)
        key = f"bench{uuid.uuid4().hex[:8]}:zset"
        graphs = {}
        for i in range(args.jobs):
            job = job_for(UserId(1), i)
            graphs[job.id] = job.graph
            await redis.zadd(key, {job.id: i})
        async with httpx.AsyncClient(timeout=30) as http:
            while len(graphs) > 0 or await _any_busy(http, sims.urls):
                tick = time.monotonic()
                for url in sims.urls:
                    if graphs and await _idle(http, url):
                        popped = await redis.zpopmin(key)
                        job_id = popped[0][0].decode()
                        prompt = {"prompt": graphs.pop(job_id), "prompt_id": job_id}
                        await http.post(f"{url}/prompt", json=prompt)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        await redis.delete(key)
        await redis.aclose()
        return measure("baseline", await sims.records())


async def _idle(http: httpx.AsyncClient, url: str) -> bool:
    answer = (await http.get(f"{url}/prompt")).json()
    return int(answer["exec_info"]["queue_remaining"]) == 0


async def _any_busy(http: httpx.AsyncClient, urls: list[str]) -> bool:
    return not all([await _idle(http, url) for url in urls])


def _database_url(server: str | None, tmp: str) -> str:
    """A new database: a SQLite file, or a fresh one on the server URL given (dropped after)."""
    if server is None:
        return f"sqlite://{tmp}/bench.db"
    return f"{server.rstrip('/')}/sg_bench_{uuid.uuid4().hex[:12]}"


def _redis_url() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return "redis://127.0.0.1:6379/0"
    except OSError:
        return None


async def main(args: argparse.Namespace) -> None:
    redis_url = _redis_url()
    wake = None if redis_url is None else await wake_cost_ms(redis_url)
    with tempfile.TemporaryDirectory() as tmp:
        db_url = _database_url(args.database_url, tmp)
        await create_database(db_url)
        await init_db(db_url)
        await migrate(db_url)
        try:
            ours = await run_stargraph(args, redis_url, Path(tmp) / "images")
        finally:
            await close_db()
            await drop_database(db_url)
    base = await run_baseline(args, redis_url)
    job_s = STEPS * args.step_time
    database = args.database_url.split("://")[0] if args.database_url else "SQLite file"
    spread = f", each step ±{args.step_jitter:.0%} (sd)" if args.step_jitter else ""
    print(f"{args.jobs} jobs of {job_s:g} s{spread} over 2 simulated backends "
          f"(Redis: {redis_url or 'in-process'}, database: {database})")  # fmt: skip
    print(f"machine: {machine()}")
    if wake is not None:
        hot, idle = wake
        print(f"loopback round trip to Redis: {hot:.2f} ms back to back, {idle:.2f} ms after "
              "20 ms idle (every hop between processes in a refill pays the second)")  # fmt: skip
    print(ours.row())
    print(base.row())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--step-time", type=float, default=0.05, help="seconds per step (×20)")
    parser.add_argument(
        "--step-jitter",
        type=float,
        default=0.0,
        help="spread of each step's time (sd ÷ mean; default 0: every job takes the same time)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a database server, e.g. postgres://postgres@127.0.0.1:5432 (default: SQLite)",
    )
    run_loop(main(parser.parse_args()))  # the loop `stargraph worker` runs on
