"""One job end to end through the real worker, the simulator, SQLite and Redis."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from stargraph.domain.jobs import JobStatus
from tests.engine.factory import PRICE, make_job
from tests.engine.harness import engine_rig


async def test_one_job_succeeds_with_its_images_stored_and_paid(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path) as rig:
        user = await rig.user("ann", 100)
        job = await rig.submit(make_job(user, count=2))
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.charged == 2 * PRICE
        balance = await rig.ledger.balance(user)
        assert (balance.available, balance.frozen) == (100 - 2 * PRICE, 0)
        assert rig.files.exists(f"{user}/{job.id}/0.png") and rig.files.exists(
            f"{user}/{job.id}/1.png"
        )
        assert await rig.ledger.audit() == []
