"""Fault drill: 300 jobs from 10 users over 3 simulated backends while everything breaks.

During the run the worker process is SIGKILLed and restarted 10 times, one backend is
restarted twice (its queue and history forgotten), the worker's database connections are
cut once, and Redis is restarted once (first run) or flushed (second run; the sweeper must
rebuild the queue from the jobs table). A few jobs are made to fail on purpose. After the
run every job is terminal, charged at most once and correctly, no hold is left, the ledger
audit is clean and every SUCCEEDED job's images are PNGs of the right size on disk.

The simulators and this test's checks run in the test process; the worker runs as its own
process (`python -m stargraph.worker`); Redis is a private `redis-server`. Set
`STARGRAPH_TEST_SEED` to replay one fault schedule.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from stargraph.domain.jobs import JobStatus
from stargraph.store.db import engine_of
from tests.drills.checks import assert_settled_and_stored
from tests.drills.db_faults import cut_database, with_application_name
from tests.drills.load import submit_jobs, terminal_count, wait_terminal
from tests.drills.processes import Process, StackEnv, worker_process
from tests.drills.redis_server import RedisServer
from tests.engine.factory import PRICE
from tests.engine.harness import FAST, Rig, engine_rig

JOBS, USERS, BACKENDS = 300, 10, 3
KILLS, BACKEND_RESTARTS = 10, 2
FAIL_EVERY = 30  # every 30th job fails on purpose (a runtime error in the simulator)
SIM = replace(FAST, step_time=0.004)
FINISH_WITHIN_S = 180.0


@dataclass
class Drill:
    rig: Rig
    worker: Process
    redis_server: RedisServer
    redis: Redis
    database_url: str
    application_name: str
    timeline: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:7.2f}s {what}")

    def report(self) -> str:
        return "timeline:\n  " + "\n  ".join(self.timeline) + "\nworker log:\n" + self.worker.tail()


async def _kill_worker(drill: Drill) -> None:
    drill.worker.kill()
    drill.worker.start()


async def _restart_backend(drill: Drill) -> None:
    await drill.rig.sims[0].restart()


async def _cut_database(drill: Drill) -> None:
    done = await cut_database(drill.database_url, drill.application_name)
    drill.note(f"  database: {done}")


async def _restart_redis(drill: Drill) -> None:
    await drill.redis_server.restart(downtime_s=0.5)


async def _flush_redis(drill: Drill) -> None:
    await drill.redis.flushall()


FAULTS: dict[str, Callable[[Drill], Awaitable[None]]] = {
    "kill worker": _kill_worker,
    "restart backend 0": _restart_backend,
    "cut database": _cut_database,
    "restart redis": _restart_redis,
    "flush redis": _flush_redis,
}


def _schedule(rng: random.Random, redis_fault: str) -> list[str]:
    plan = ["kill worker"] * KILLS + ["restart backend 0"] * BACKEND_RESTARTS
    plan += ["cut database", redis_fault]
    rng.shuffle(plan)
    return plan


# database None: PostgreSQL where it runs (always in CI), else SQLite; the last run is on
# SQLite everywhere, where the cut is an outage of the file's lock (see db_faults).
RUNS = [
    pytest.param("restart redis", None, id="restart-redis"),
    pytest.param("flush redis", None, id="flush-redis"),
    pytest.param("flush redis", "sqlite", id="flush-redis-sqlite"),
]


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize(("redis_fault", "drill_db"), RUNS, indirect=["drill_db"])
async def test_300_jobs_survive_kills_backend_restarts_and_outages(
    redis_fault: str,
    drill_db: str,
    private_redis: RedisServer,
    private_redis_client: Redis,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("STARGRAPH_TEST_SEED", "6"))
    rng = random.Random(f"{seed}:{redis_fault}")
    storage = tmp_path / "images"
    prefix = f"d{uuid.uuid4().hex[:12]}"
    application_name = f"sgdrill{uuid.uuid4().hex[:12]}"
    async with engine_rig(
        private_redis_client, prefix, storage, backends=BACKENDS, sim=SIM, start=False
    ) as rig:
        job_ids, failing = await submit_jobs(
            rig, users=USERS, jobs=JOBS, steps=3, fail_every=FAIL_EVERY
        )
        env = StackEnv(
            database_url=drill_db,
            redis_url=private_redis.url,
            prefix=prefix,
            backends=rig.backends,
            storage=storage,
            extra={"STARGRAPH_LEASE_S": "1"},
        )
        worker_url = drill_db
        if engine_of(drill_db) == "postgres":
            worker_url = with_application_name(drill_db, application_name)
        worker = worker_process(env, tmp_path / "worker.log", STARGRAPH_DATABASE_URL=worker_url)
        drill = Drill(rig, worker, private_redis, private_redis_client, drill_db, application_name)
        watch: dict[str, Any] = {"alive": [worker], "report": drill.report}
        worker.start()
        try:
            for fault in _schedule(rng, redis_fault):
                done = await terminal_count(job_ids)
                await wait_terminal(job_ids, at_least=done + rng.randint(2, 9), **watch)
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                drill.note(f"{fault} (terminal: {await terminal_count(job_ids)})")
                await FAULTS[fault](drill)
            await wait_terminal(job_ids, within_s=FINISH_WITHIN_S, **watch)
            drill.note("all terminal")
            await worker.up("worker starting")  # the last fault may have just restarted it
            code = await worker.terminate()
            assert code == 0, "the worker did not stop cleanly\n" + drill.report()
        finally:
            await worker.stop_quietly()
        print(drill.report())
        posted = Counter(r.prompt_id for sim in rig.sims for r in sim.records)
        print(f"seed {seed}; prompts posted more than once: {sum(v > 1 for v in posted.values())}")

    expected = Counter({JobStatus.SUCCEEDED.value: JOBS - failing, JobStatus.FAILED.value: failing})
    await assert_settled_and_stored(
        job_ids, files=rig.files, price=PRICE, expected=expected, context=drill.report()
    )
