"""Faults and cancels: each job ends in the right state with the right refund."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from stargraph.domain.backends import BackendUncertain, BackendUnreachable
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.progress import Succeeded
from stargraph.domain.types import BackendId, JobId, Principal, Role, UserId
from stargraph.engine.gateway import ComfyGateway
from stargraph.engine.results import Finisher
from stargraph.store.images import TortoiseImageStore
from stargraph.store.models import ImageRow
from tests.engine.factory import PRICE, make_job
from tests.engine.harness import FAST, Rig, engine_rig

SLOW = replace(FAST, step_time=0.05)  # 20 steps = 1 s: long enough to act while it runs


async def _refunded(rig: Rig, user: UserId, points: int, job: Job) -> None:
    assert job.charged == 0
    balance = await rig.ledger.balance(user)
    assert (balance.available, balance.frozen) == (points, 0)
    assert await rig.ledger.audit() == []


def _outcomes(rig: Rig, job_id: JobId) -> list[str]:
    return [r.outcome for sim in rig.sims for r in sim.records if r.prompt_id == job_id]


async def test_a_simulator_restart_mid_job_sends_the_job_again(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, sim=SLOW, post_grace_s=0.2) as rig:
        user = await rig.user("rita", 100)
        job = await rig.submit(make_job(user, steps=10))
        await rig.wait_status(job.id, JobStatus.RUNNING)
        await rig.sims[0].restart()
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
        assert _outcomes(rig, job.id) == ["lost", "success"]
        assert done.charged == PRICE and await rig.ledger.audit() == []


async def test_a_socket_dropped_before_executed_is_completed_from_the_history(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path) as rig:
        rig.sims[0].faults.drop_on = "executed"
        user = await rig.user("dora", 100)
        job = await rig.submit(make_job(user, count=3))
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
        assert done.charged == 3 * PRICE
        assert await ImageRow.filter(job_id=job.id).count() == 3
        assert all(rig.files.exists(f"{user}/{job.id}/{i}.png") for i in range(3))
        assert rig.sims[0].faults.drop_on is None  # the drop did happen (it disarms after)


async def test_a_runtime_error_fails_the_job_and_refunds_it(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path) as rig:
        rig.sims[0].faults.fail_prompts = 1
        user = await rig.user("rudi", 100)
        job = await rig.submit(make_job(user, count=2))
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "COMFY_RUNTIME"
        assert "simulated failure" in done.error.message
        await _refunded(rig, user, 100, done)


async def test_a_validation_error_fails_at_once_and_refunds(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path) as rig:
        user = await rig.user("vera", 100)
        job = await rig.submit(make_job(user, model="missing.safetensors"))
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.FAILED and done.attempts == 1
        assert done.error is not None and done.error.code == "COMFY_VALIDATION"
        assert "ckpt_name" in done.error.message
        assert rig.sims[0].records == []  # nothing was queued in ComfyUI
        await _refunded(rig, user, 100, done)


async def test_a_job_past_its_timeout_is_interrupted_and_failed(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, sim=SLOW, job_timeout_s=0.3) as rig:
        user = await rig.user("tim", 100)
        job = await rig.submit(make_job(user, steps=100))  # 5 s
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "TIMEOUT"
        await _refunded(rig, user, 100, done)
        await _until(lambda: _outcomes(rig, job.id) == ["interrupted"])


async def test_cancel_of_a_waiting_job(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False) as rig:
        user = await rig.user("quinn", 100)
        job = await rig.submit(make_job(user))
        done = await rig.control().cancel(_principal(user), job.id)
        assert done.status is JobStatus.CANCELLED
        assert await rig.queue.position(job.id) is None
        await _refunded(rig, user, 100, done)


async def test_cancel_of_a_job_waiting_inside_comfyui_and_of_a_running_one(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, sim=SLOW) as rig:
        user = await rig.user("carl", 100)
        running = await rig.submit(make_job(user, steps=100, seed=1))
        pending = await rig.submit(make_job(user, steps=100, seed=2))
        await rig.wait_status(running.id, JobStatus.RUNNING)
        await rig.wait_status(pending.id, JobStatus.DISPATCHED)
        await _until(lambda: len(rig.sims[0].records) == 2)  # both inside ComfyUI

        control = rig.control()
        first = await control.cancel(_principal(user), pending.id)
        assert first.status is JobStatus.CANCELLED
        assert _outcomes(rig, pending.id) == ["deleted"]
        second = await control.cancel(_principal(user), running.id)
        assert second.status is JobStatus.CANCELLED
        await _until(lambda: _outcomes(rig, running.id) == ["interrupted"])

        for job in (first, second):
            assert job.charged == 0
        balance = await rig.ledger.balance(user)
        assert (balance.available, balance.frozen) == (100, 0)
        assert await rig.ledger.audit() == []
        # the slots are free again: a new job runs at once
        after = await rig.submit(make_job(user, steps=2, seed=3))
        (done,) = await rig.wait_terminal([after.id])
        assert done.status is JobStatus.SUCCEEDED


async def test_an_ending_seen_twice_is_settled_once(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    """Two listeners (or a replayed message) finishing the same job: one settlement."""
    async with engine_rig(redis, redis_prefix, tmp_path, start=False) as rig:
        user = await rig.user("twice", 100)
        job = await rig.submit(make_job(user, count=2))
        backend = rig.backends[0]
        await rig.jobs.mark_dispatched(job, backend, job.created_at)
        await rig.gateway.post(backend, job.id, job.graph, "someone")
        await _until(lambda: _outcomes(rig, job.id) == ["success"])
        finishers = [_finisher(rig) for _ in range(2)]
        results = await asyncio.gather(
            *(f.end(job, backend, Succeeded(())) for f in finishers)  # images from history
        )
        assert sorted(results) == [False, True]
        done = await rig.jobs.get(job.id)
        assert done is not None and done.status is JobStatus.SUCCEEDED
        assert done.charged == 2 * PRICE
        assert await ImageRow.filter(job_id=job.id).count() == 2
        assert await rig.ledger.audit() == []


class _FlakyGateway:
    """The real gateway, except that POSTs to `broken` fail the given way."""

    def __init__(self, inner: ComfyGateway, broken: BackendId, error: type[Exception]) -> None:
        self._inner = inner
        self.broken = broken
        self._error = error
        self.failures = 0

    async def post(self, backend: BackendId, job_id: JobId, graph: Any, client_id: str) -> None:
        if backend == self.broken:
            self.failures += 1
            if self._error is BackendUncertain:  # it did arrive; the answer was lost
                await self._inner.post(backend, job_id, graph, client_id)
            raise self._error(f"simulated {self._error.__name__}")
        await self._inner.post(backend, job_id, graph, client_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_refused_post_puts_the_job_back_in_its_place_for_another_backend(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    # 30 steps of 20 ms: the refused job is back in the queue long before the job on
    # backend 1 nears its end and the next one is claimed on standby, even on a loaded machine
    async with engine_rig(
        redis, redis_prefix, tmp_path, backends=2, start=False, max_inflight=1,
        sim=replace(FAST, step_time=0.02),
    ) as rig:  # fmt: skip
        flaky = _FlakyGateway(rig.gateway, rig.backends[0], BackendUnreachable)
        rig.gateway = flaky  # type: ignore[assignment]
        user = await rig.user("paul", 100)
        jobs = [await rig.submit(make_job(user, seed=i + 1, steps=30)) for i in range(4)]
        await rig.start_worker()
        done = await rig.wait_terminal([j.id for j in jobs])
        assert {j.status for j in done} == {JobStatus.SUCCEEDED}
        assert flaky.failures >= 1
        assert rig.sims[0].records == []
        # the first job, refused by backend 0 while the second went to backend 1, kept its
        # place: it ran before the two that were still waiting behind it
        order = [r.prompt_id for r in rig.sims[1].records]
        assert order.index(jobs[0].id) < min(order.index(jobs[2].id), order.index(jobs[3].id))
        assert await rig.ledger.audit() == []


async def test_a_job_no_backend_takes_fails_after_its_attempts_and_is_refunded(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False, max_attempts=2) as rig:
        rig.gateway = _FlakyGateway(rig.gateway, rig.backends[0], BackendUnreachable)  # type: ignore[assignment]
        user = await rig.user("nora", 100)
        job = await rig.submit(make_job(user))
        await rig.start_worker()
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.FAILED and done.attempts == 2
        assert done.error is not None and done.error.code == "DISPATCH_FAILED"
        await _refunded(rig, user, 100, done)


async def test_a_post_whose_answer_was_lost_is_not_sent_twice(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, start=False, post_grace_s=0.2) as rig:
        flaky = _FlakyGateway(rig.gateway, rig.backends[0], BackendUncertain)
        rig.gateway = flaky  # type: ignore[assignment]
        user = await rig.user("umar", 100)
        job = await rig.submit(make_job(user))
        await rig.start_worker()
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
        assert Counter(r.prompt_id for r in rig.sims[0].records) == {job.id: 1}
        assert await rig.ledger.audit() == []


# --- helpers ---------------------------------------------------------------------------------


def _principal(user: UserId) -> Principal:
    return Principal(user, f"user{user}", Role.USER)


def _finisher(rig: Rig) -> Finisher:
    return Finisher(
        jobs=rig.jobs,
        images=TortoiseImageStore(),
        files=rig.files,
        engine=rig.gateway,
        events=rig.events,
        queue=rig.queue,
        price_per_image=PRICE,
    )


async def _until(condition: Any, within_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_job_on_a_backend_that_went_away_still_times_out_and_is_refunded(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(redis, redis_prefix, tmp_path, sim=SLOW, job_timeout_s=0.5) as rig:
        user = await rig.user("gone", 100)
        job = await rig.submit(make_job(user, steps=100))
        await rig.wait_status(job.id, JobStatus.RUNNING)
        await rig.sims[0].stop_listening()  # the backend vanishes with the job inside
        (done,) = await rig.wait_terminal([job.id])
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "TIMEOUT"
        await _refunded(rig, user, 100, done)
