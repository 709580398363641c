"""The worker's life: a graceful stop mid-run, Redis emptied under it, what it announces."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from stargraph.domain.events import JobEvent
from stargraph.domain.jobs import IN_ENGINE, TERMINAL, JobStatus
from stargraph.domain.types import JobId
from stargraph.store.models import JobRow
from tests.engine.factory import CHECKPOINT, make_job
from tests.engine.harness import FAST, engine_rig

QUICK = replace(FAST, step_time=0.03)  # 5 steps: 0.15 s a job


async def test_a_graceful_stop_mid_run_leaves_nothing_stuck_and_a_restart_finishes_all(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, backends=2, sim=QUICK) as rig:
        user = await rig.user("stan", 1000)
        jobs = [await rig.submit(make_job(user, seed=i + 1, steps=5)) for i in range(30)]
        await _until_some_finished([j.id for j in jobs], 5)
        await rig.stop_worker()

        states: Counter[JobStatus] = Counter()
        for job in jobs:
            current = await rig.jobs.get(job.id)
            assert current is not None
            if current.status is JobStatus.QUEUED:
                assert await rig.queue.position(job.id) is not None  # waiting, not leased
            elif current.status in IN_ENGINE:  # inside a backend: the next worker follows it
                assert job.id in {r.prompt_id for s in rig.sims for r in s.records}
            states[current.status] += 1
        assert states[JobStatus.SUCCEEDED] >= 5 and states[JobStatus.QUEUED] > 0

        await rig.start_worker()
        done = await rig.wait_terminal([j.id for j in jobs])
        assert {j.status for j in done} == {JobStatus.SUCCEEDED}
        posted = Counter(r.prompt_id for s in rig.sims for r in s.records)
        assert set(posted.values()) == {1}
        assert await rig.ledger.audit() == []


async def test_redis_emptied_under_a_running_worker_loses_no_job(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, backends=2, sim=QUICK) as rig:
        user = await rig.user("flo", 1000)
        jobs = [await rig.submit(make_job(user, seed=i + 1, steps=5)) for i in range(30)]
        await _until_some_finished([j.id for j in jobs], 3)
        keys = [k async for k in redis.scan_iter(match=f"*{redis_prefix}*")]
        await redis.delete(*keys)  # everything of this deployment, as a FLUSHALL would
        done = await rig.wait_terminal([j.id for j in jobs])
        assert {j.status for j in done} == {JobStatus.SUCCEEDED}
        assert all(j.charged == 10 for j in done)
        assert await rig.ledger.audit() == []


async def test_the_owner_hears_dispatch_start_steps_previews_and_success_in_order(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False) as rig, rig.events:
        user = await rig.user("eve", 100)
        seen: list[JobEvent] = []
        after = await rig.events.last_cursor(user)  # replay from here: no race with the worker
        following = asyncio.create_task(_collect(rig.events.follow_user(user, after), seen))
        job = await rig.submit(make_job(user, steps=4))
        await rig.start_worker()
        await asyncio.wait_for(following, 30)
        kinds = [e.kind for e in seen if e.job_id == job.id]
        assert kinds[0] == "dispatched" and kinds[1] == "started" and kinds[-1] == "succeeded"
        assert [e.step for e in seen if e.kind == "progress"] == [1, 2, 3, 4]  # type: ignore[attr-defined]
        previews = [e for e in seen if e.kind == "preview"]
        assert previews and all(
            p.data_url.startswith("data:image/jpeg;base64,")  # type: ignore[attr-defined]
            for p in previews
        )
        assert len(seen[-1].image_ids) == 1  # type: ignore[attr-defined]


async def test_capabilities_come_from_the_backends_once_they_answer(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    sim = replace(FAST, checkpoints=(CHECKPOINT, "xl.safetensors"))
    async with engine_rig(redis, redis_prefix, tmp_path, backends=2, sim=sim, start=False) as rig:
        engine = await rig.start_worker()
        await _until(lambda: "xl.safetensors" in engine.capabilities.current().checkpoints)
        offer = engine.capabilities.current()
        assert "euler" in offer.samplers and "karras" in offer.schedulers

        await _until(lambda: all(b.healthy for b in engine.backends()))
        await _until_async(lambda: _board_healthy(engine))  # what API processes read
        board = await engine.board.read(rig.config.backends, rig.config.max_inflight)
        assert [b.url for b in board] == list(rig.config.backends)


async def _board_healthy(engine: object) -> bool:
    board = await engine.board.read(engine.config.backends, engine.config.max_inflight)  # type: ignore[attr-defined]
    return all(b.healthy and b.inflight == 0 for b in board)


async def _collect(events: object, into: list[JobEvent]) -> None:
    async for event in events:  # type: ignore[attr-defined]
        into.append(event)
        if event.is_terminal:
            return


async def _until_some_finished(ids: list[JobId], count: int) -> None:
    async def finished() -> bool:
        terminal = [s.value for s in TERMINAL]
        return await JobRow.filter(id__in=ids, status__in=terminal).count() >= count

    await _until_async(finished)


async def _until(condition: object, within_s: float = 20.0) -> None:
    async def check() -> bool:
        return bool(condition())  # type: ignore[operator]

    await _until_async(check, within_s)


async def _until_async(condition: object, within_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
