"""The worker as a real process, SIGKILLed at random moments and restarted: nothing is lost,
nothing is charged twice, no hold is left. The simulators run in this test's process, the
worker in its own, both on one SQLite file and one real Redis."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stargraph.domain.jobs import TERMINAL, JobStatus
from stargraph.settings import PROJECT_ROOT
from stargraph.store.models import HoldRow, JobRow
from tests.conftest import REDIS_URL, need_service
from tests.engine.factory import PRICE, make_job
from tests.engine.harness import FAST, Rig, engine_rig

KILLS = 6
JOBS = 100


def _spawn(rig: Rig, db_url: str, storage: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        STARGRAPH_DATABASE_URL=db_url,
        STARGRAPH_REDIS_URL=REDIS_URL,
        STARGRAPH_REDIS_PREFIX=rig.prefix,
        STARGRAPH_COMFYUI_URLS=",".join(rig.backends),
        STARGRAPH_STORAGE_DIR=str(storage),
        STARGRAPH_LEASE_S="1",
        STARGRAPH_LOG_LEVEL="INFO",
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stargraph.worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _finished() -> int:
    return await JobRow.filter(status__in=[s.value for s in TERMINAL]).count()


async def _until_progress(since: int, worker: subprocess.Popen[bytes], within_s: float) -> None:
    """Wait until the worker finished at least one more job (it is up and busy)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while await _finished() <= since and loop.time() < deadline:
        assert worker.poll() is None, "the worker died on its own"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_nothing_and_charges_once(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    need_service("Redis", "127.0.0.1", 6379)
    rng = random.Random(int(os.environ.get("STARGRAPH_TEST_SEED", "4")))
    storage, log = tmp_path / "images", tmp_path / "worker.log"
    sim = FAST.__class__(**{**FAST.__dict__, "step_time": 0.01})
    async with engine_rig(redis, redis_prefix, storage, backends=2, sim=sim, start=False) as rig:
        users = [await rig.user(f"k{i}", 10_000) for i in range(5)]
        jobs = [await rig.submit(make_job(users[i % 5], seed=i + 1, steps=4)) for i in range(JOBS)]

        for _ in range(KILLS):
            worker = _spawn(rig, db, storage, log)
            await _until_progress(await _finished(), worker, within_s=30)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            worker.send_signal(signal.SIGKILL)
            worker.wait()

        worker = _spawn(rig, db, storage, log)
        try:
            done = await rig.wait_terminal([j.id for j in jobs], within_s=120)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(worker.wait, 30)
        assert code == 0, log.read_text()[-3000:]

    assert Counter(j.status for j in done) == {JobStatus.SUCCEEDED: JOBS}, log.read_text()[-3000:]
    assert all(j.charged == PRICE for j in done)
    assert await HoldRow.filter(settled=False).count() == 0
    assert await rig.ledger.audit() == []
    for user in users:
        balance = await rig.ledger.balance(user)
        assert balance.frozen == 0 and balance.available == 10_000 - 20 * PRICE
    posted = Counter(r.prompt_id for s in rig.sims for r in s.records)
    assert set(posted) == {j.id for j in jobs}
    assert all(rig.files.exists(f"{j.user_id}/{j.id}/0.png") for j in done)
