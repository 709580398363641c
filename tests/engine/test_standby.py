"""The next job waits on standby while a full backend's running job ends, and is sent the moment
a job leaves it; ComfyUI never holds more than `max_inflight`. A standby that is not sent
goes back to its place in the queue with its attempt undone."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stargraph.comfy.sim_engine import PromptRecord
from stargraph.domain.backends import BackendPool
from stargraph.domain.jobs import Job, JobStatus
from stargraph.domain.types import BackendId, JobId, Principal, Role, UserId
from stargraph.engine.slots import RedisSlotBook
from stargraph.engine.sweeper import RedisMarker
from tests.engine.counts import fresh
from tests.engine.factory import make_job, with_second_pass
from tests.engine.harness import FAST, Rig, engine_rig

B = BackendId("http://b")
J = JobId("standby")
MANUAL = replace(FAST, manual_steps=True)
STEPS = 20  # make_job's default sampler steps


# --- the pool --------------------------------------------------------------------------------


async def test_a_full_backend_whose_job_nears_its_end_asks_for_one_standby() -> None:
    pool = BackendPool([B], max_inflight=2)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(1))
    pool.near_end(B)
    assert pool.take_standby_request() is None  # a free slot: the plain refill serves it
    pool.set_inflight(B, fresh(2))
    pool.near_end(B)
    pool.near_end(B)
    assert pool.take_standby_request() == B
    assert pool.take_standby_request() is None  # asked once
    pool.set_inflight(B, fresh(3))  # the standby's reservation
    pool.near_end(B)
    assert pool.take_standby_request() is None  # one standby per backend


async def test_a_standby_is_let_go_the_moment_a_job_leaves_its_backend() -> None:
    pool = BackendPool([B], max_inflight=2)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(3))
    waiting = asyncio.create_task(pool.wait_for_room(B, J, 30, asyncio.Event()))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.note_left(B)
    assert await asyncio.wait_for(waiting, 1) is True
    assert pool.take_refill_gap(B) is not None  # the freed slot counts as one waiting for it


async def test_a_withdrawn_standby_stops_waiting_and_only_its_own_wait_ends() -> None:
    pool = BackendPool([B], max_inflight=1)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(2))
    stop = asyncio.Event()
    waiting = asyncio.create_task(pool.wait_for_room(B, J, 30, stop))
    await asyncio.sleep(0.01)
    pool.withdraw(JobId("another job"))  # not waiting here: nothing changes, nothing kept
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.withdraw(J)
    assert await asyncio.wait_for(waiting, 1) is False
    pool.withdraw(J)  # after the wait: forgotten, so a later wait for the id is not ended
    again = asyncio.create_task(pool.wait_for_room(B, J, 30, stop))
    await asyncio.sleep(0.01)
    assert not again.done()
    pool.note_left(B)
    assert await asyncio.wait_for(again, 1) is True


@pytest.mark.parametrize("why", ["down", "backoff", "stop", "hold"])
async def test_a_standby_is_not_sent_when_its_backend_goes_or_time_runs_out(why: str) -> None:
    pool = BackendPool([B], max_inflight=1)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(2))
    stop = asyncio.Event()
    waiting = asyncio.create_task(pool.wait_for_room(B, J, 0.05 if why == "hold" else 30, stop))
    await asyncio.sleep(0.01)
    if why == "down":
        pool.mark_down(B, "socket closed")
    elif why == "backoff":
        pool.back_off(B, "send failed")
    elif why == "stop":
        stop.set()
        pool.wake_standbys()
    assert await asyncio.wait_for(waiting, 1) is False


# --- the engine ------------------------------------------------------------------------------


def _most_held(records: list[PromptRecord]) -> int:
    """The most prompts the backend held at once (posted, not yet finished)."""
    moments = sorted(
        [(r.posted_at, 1) for r in records]
        + [(r.finished_at, -1) for r in records if r.finished_at is not None]
    )
    held = most = 0
    for _, change in moments:  # at equal times the end (-1) comes first
        held += change
        most = max(most, held)
    return most


async def _started_after_a_clean_start(rig: Rig) -> None:
    """Start the worker with Redis known to hold the queue: no rebuild from the jobs table
    races the first claims (a fresh prefix looks like Redis lost its data)."""
    await RedisMarker(rig.redis, rig.prefix).was_lost()
    await rig.start_worker()


async def _step_to_standby(rig: Rig, running: Job, waiting: Job) -> None:
    """Step `running` to its last step: `waiting` goes on standby for the backend."""
    await rig.wait_status(running.id, JobStatus.RUNNING)
    for _ in range(STEPS - 1):
        await rig.sims[0].simulator.wait_for_step()
        await rig.sims[0].simulator.release_steps(1)
    await rig.wait_status(waiting.id, JobStatus.DISPATCHED)
    posted = [r.prompt_id for r in rig.sims[0].records]
    assert waiting.id not in posted and posted[-1] == running.id  # not sent yet


async def test_the_next_job_is_prepared_before_the_slot_frees_and_sent_when_it_does(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with engine_rig(
        redis, redis_prefix, tmp_path, sim=MANUAL, max_inflight=1, lease_s=8.0, start=False
    ) as rig:
        user = await rig.user("sam")
        jobs = [await rig.submit(make_job(user, steps=STEPS, seed=i)) for i in range(4)]
        await _started_after_a_clean_start(rig)
        for running, waiting in itertools.pairwise(jobs):
            await _step_to_standby(rig, running, waiting)
            await rig.sims[0].simulator.wait_for_step()
            await rig.sims[0].simulator.release_steps(1)  # the last step: `running` ends
        await rig.sims[0].simulator.release_steps(None)
        done = await rig.wait_terminal([j.id for j in jobs])
        assert {j.status for j in done} == {JobStatus.SUCCEEDED}
        assert all(j.attempts == 1 for j in done)
        records = rig.sims[0].records
        assert [r.prompt_id for r in records] == [j.id for j in jobs]  # queue order kept
        assert _most_held(records) == 1  # never more than max_inflight inside ComfyUI
        for before, after in itertools.pairwise(records):
            assert before.finished_at is not None and after.posted_at >= before.finished_at


async def test_a_two_pass_job_asks_for_its_standby_near_the_end_of_its_last_pass(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    """The end of the first pass is not the end of the job: the next job stays in the queue,
    where any backend may take it, until the second pass nears its end."""
    async with engine_rig(
        redis, redis_prefix, tmp_path, sim=MANUAL, max_inflight=1, lease_s=8.0, start=False
    ) as rig:
        user = await rig.user("tess")
        first = await rig.submit(with_second_pass(make_job(user, steps=4, seed=1), steps=4))
        waiting = await rig.submit(make_job(user, steps=4, seed=2))
        await _started_after_a_clean_start(rig)
        await rig.wait_status(first.id, JobStatus.RUNNING)
        for _ in range(4):  # the first pass, at a pace of seconds left: no early standby
            await rig.sims[0].simulator.wait_for_step()
            await rig.sims[0].simulator.release_steps(1)
            await asyncio.sleep(0.15)
        await rig.sims[0].simulator.wait_for_step()  # the second pass waits for its first step
        await asyncio.sleep(0.3)
        still = await rig.jobs.get(waiting.id)
        assert still is not None and still.status is JobStatus.QUEUED
        for _ in range(3):  # the second pass to its last step
            await rig.sims[0].simulator.release_steps(1)
            await rig.sims[0].simulator.wait_for_step()
        await rig.wait_status(waiting.id, JobStatus.DISPATCHED)
        assert [r.prompt_id for r in rig.sims[0].records] == [first.id]  # not sent yet
        await rig.sims[0].simulator.release_steps(None)
        done = await rig.wait_terminal([first.id, waiting.id])
        assert {j.status for j in done} == {JobStatus.SUCCEEDED}


async def _back_in_its_place(rig: Rig, job: Job) -> None:
    back = await rig.wait_status(job.id, JobStatus.QUEUED)
    assert back.attempts == 0 and back.backend is None  # the attempt is not counted
    for _ in range(500):  # the row goes back first, then the queue entry
        if (position := await rig.queue.position(job.id)) is not None:
            break
        await asyncio.sleep(0.01)
    assert position == 1


@contextlib.asynccontextmanager
async def _second_on_standby(
    redis: Redis, prefix: str, tmp_path: Path, lease_s: float
) -> AsyncIterator[tuple[Rig, UserId, list[Job]]]:
    """One backend, one job at a time, three jobs of one user (1 000 points): the first
    at its last step, the second on standby."""
    async with engine_rig(
        redis, prefix, tmp_path, sim=MANUAL, max_inflight=1, lease_s=lease_s, start=False
    ) as rig:
        user = await rig.user("stan", points=1000)
        jobs = [await rig.submit(make_job(user, steps=STEPS, seed=i)) for i in range(3)]
        await _started_after_a_clean_start(rig)
        await _step_to_standby(rig, jobs[0], jobs[1])
        yield rig, user, jobs


@pytest.mark.parametrize("how", ["worker stops", "backend goes away", "hold runs out"])
async def test_a_standby_not_sent_goes_back_to_its_place_uncounted(
    how: str, db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    lease_s = 2.0 if how == "hold runs out" else 8.0  # the hold is a quarter of it
    async with _second_on_standby(redis, redis_prefix, tmp_path, lease_s) as (rig, _, jobs):
        first, second, third = jobs
        if how == "worker stops":
            await rig.stop_worker()
            await _back_in_its_place(rig, second)
            await rig.start_worker()
        elif how == "backend goes away":
            await rig.sims[0].stop_listening()
            await _back_in_its_place(rig, second)
            await rig.sims[0].start_listening()
        else:
            await _back_in_its_place(rig, second)
        assert [r.prompt_id for r in rig.sims[0].records] == [first.id]
        await rig.sims[0].simulator.release_steps(None)
        done = await rig.wait_terminal([first.id, second.id, third.id])
        assert [j.status for j in done] == [JobStatus.SUCCEEDED] * 3
        assert done[1].attempts == 1  # sent once, counted once
        assert await rig.ledger.audit() == []


async def test_a_standby_cancelled_before_it_is_sent_never_reaches_the_engine(
    db: str, redis: Redis, redis_prefix: str, tmp_path: Path
) -> None:
    async with _second_on_standby(redis, redis_prefix, tmp_path, 8.0) as (rig, user, jobs):
        first, second, third = jobs
        cancelled = await rig.control().cancel(Principal(user, "stan", Role.USER), second.id)
        assert cancelled.status is JobStatus.CANCELLED
        slots = RedisSlotBook(rig.redis, rig.prefix)
        for _ in range(500):  # the worker hears of it and frees the standby's slot
            if (await slots.counts(rig.backends))[rig.backends[0]].inflight == 1:
                break
            await asyncio.sleep(0.01)
        await rig.sims[0].simulator.release_steps(None)  # `first` ends, then the rest run
        done = await rig.wait_terminal([first.id, third.id])
        assert [j.status for j in done] == [JobStatus.SUCCEEDED] * 2
        assert [r.prompt_id for r in rig.sims[0].records] == [first.id, third.id]
        assert await slots.held(rig.backends) == {rig.backends[0]: []}
        balance = await rig.ledger.balance(user)
        assert (balance.available, balance.frozen) == (1000 - first.cost - third.cost, 0)
        assert await rig.ledger.audit() == []
