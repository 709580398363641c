"""Cancelling and reprioritising on real SQLite and Redis: ownership, refunds, queue places,
events; in-engine cancels go through EngineControl (a recording one here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stargraph.domain.errors import Conflict, Forbidden, NotFound
from stargraph.domain.events import JobCancelled, JobQueued
from stargraph.domain.jobs import Job, JobStatus, NewImage
from stargraph.domain.ledger import Balance
from stargraph.domain.params import SubmitRequest
from stargraph.domain.types import BackendId, Priority
from tests.domain.test_submit_support import PRICE, World, now, world

BACKEND = BackendId("http://127.0.0.1:8188")


@pytest.fixture
async def w(db: str, redis: Redis, redis_prefix: str) -> AsyncIterator[World]:
    async with world(redis, redis_prefix) as built:
        yield built


async def dispatch(w: World, job: Job, *, running: bool) -> None:
    """What a dispatcher (and a listener) would do to take the next job into an engine."""
    claim = await w.queue.claim(BACKEND, 30)
    assert claim is not None and claim.job_id == job.id
    assert await w.jobs.mark_dispatched(job, BACKEND, now()) is not None
    assert await w.queue.ack(claim)
    if running:
        assert await w.jobs.mark_running(job.id, now()) is not None


# ---------------------------------------------------------------- cancel


async def test_cancel_of_a_waiting_job(w: World) -> None:
    alice, bob = await w.user(100), await w.user(100)
    mine = await w.submit(alice, count=3)
    theirs = await w.submit(bob)
    assert await w.queue.position(theirs.id) == 2
    cancelled = await w.control.cancel(alice, mine.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.charged == 0
    assert cancelled.finished_at is not None
    assert await w.status(mine) is JobStatus.CANCELLED
    assert await w.queue.position(mine.id) is None
    assert await w.order() == [theirs.id]  # bob moved up
    assert await w.ledger.balance(alice.user_id) == Balance(100, 0)
    queued, ended = await w.events(alice, 2)
    assert isinstance(queued, JobQueued)
    assert isinstance(ended, JobCancelled) and ended.job_id == mine.id
    assert w.engine.cancelled == []
    assert await w.ledger.audit() == []


async def test_another_users_job_is_not_found(w: World) -> None:
    alice, mallory = await w.user(), await w.user()
    job = await w.submit(alice)
    for attempt in (
        w.control.cancel(mallory, job.id),
        w.control.get(mallory, job.id),
        w.control.reprioritize(mallory, job.id, Priority.LOW, False),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert await w.status(job) is JobStatus.QUEUED
    assert await w.queue.position(job.id) == 1
    assert await w.ledger.balance(alice.user_id) == Balance(90, 10)
    assert await w.bus.last_cursor(mallory.user_id) == "0-0"


async def test_an_admin_may_cancel_anyones_job(w: World) -> None:
    alice, admin = await w.user(100), await w.user(admin=True)
    job = await w.submit(alice)
    assert (await w.control.cancel(admin, job.id)).status is JobStatus.CANCELLED
    assert await w.ledger.balance(alice.user_id) == Balance(100, 0)
    _, ended = await w.events(alice, 2)  # the owner is told
    assert isinstance(ended, JobCancelled)


async def test_cancel_of_an_ended_job_is_a_conflict(w: World) -> None:
    alice = await w.user(100)
    job = await w.submit(alice)
    await w.control.cancel(alice, job.id)
    with pytest.raises(Conflict):
        await w.control.cancel(alice, job.id)
    done = await w.submit(alice)
    await dispatch(w, done, running=True)
    await w.jobs.succeed(done.id, [NewImage(0, "a.png", 512, 512, 1)], PRICE, now())
    with pytest.raises(Conflict):
        await w.control.cancel(alice, done.id)
    assert await w.ledger.balance(alice.user_id) == Balance(90, 0)
    assert await w.ledger.audit() == []


@pytest.mark.parametrize("running", [False, True], ids=["dispatched", "running"])
async def test_cancel_in_the_engine_goes_through_engine_control(w: World, running: bool) -> None:
    alice = await w.user(100)
    job = await w.submit(alice, count=2)
    await dispatch(w, job, running=running)
    cancelled = await w.control.cancel(alice, job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert [j.id for j in w.engine.cancelled] == [job.id]
    assert w.engine.cancelled[0].backend == BACKEND
    # a DISPATCHED job may be on standby in a worker: withdrawn once it is CANCELLED
    withdrawn = [(j.id, j.status) for j in w.engine.withdrawn]
    assert withdrawn == ([] if running else [(job.id, JobStatus.CANCELLED)])
    assert await w.ledger.balance(alice.user_id) == Balance(100, 0)
    _, ended = await w.events(alice, 2)
    assert isinstance(ended, JobCancelled)
    assert await w.ledger.audit() == []


async def test_cancel_while_a_dispatcher_holds_the_lease(w: World) -> None:
    alice = await w.user(100)
    job = await w.submit(alice)
    claim = await w.queue.claim(BACKEND, 30)
    assert claim is not None  # claimed, not yet marked DISPATCHED
    assert (await w.control.cancel(alice, job.id)).status is JobStatus.CANCELLED
    # the dispatcher then loses its compare-and-set and the lease is gone
    assert await w.jobs.mark_dispatched(job, BACKEND, now()) is None
    assert not await w.queue.ack(claim)
    assert await w.queue.length() == 0
    assert await w.ledger.balance(alice.user_id) == Balance(100, 0)


async def test_a_job_that_ends_during_the_cancel_keeps_its_ending(w: World) -> None:
    alice = await w.user(100)
    job = await w.submit(alice, count=2)
    await dispatch(w, job, running=True)

    async def finishes_first(seen: Job) -> None:
        image = NewImage(0, "a.png", 512, 512, 1)
        assert await w.jobs.succeed(seen.id, [image], PRICE, now()) is not None

    w.engine.also = finishes_first
    result = await w.control.cancel(alice, job.id)
    assert result.status is JobStatus.SUCCEEDED and result.charged == PRICE
    assert w.engine.withdrawn == []
    assert await w.ledger.balance(alice.user_id) == Balance(90, 0)
    assert await w.ledger.audit() == []


# ---------------------------------------------------------------- reprioritize


async def test_an_owner_lowers_a_job_and_raises_it_back(w: World) -> None:
    alice, bob = await w.user(100), await w.user(100)
    mine = await w.submit(alice)
    theirs = await w.submit(bob)
    lowered = await w.control.reprioritize(alice, mine.id, Priority.LOW, False)
    assert lowered.params.priority is Priority.LOW
    assert await w.order() == [theirs.id, mine.id]
    raised = await w.control.reprioritize(alice, mine.id, Priority.NORMAL, False)
    assert raised.params.priority is Priority.NORMAL
    stored = await w.jobs.get(mine.id)
    assert stored is not None and stored.params.priority is Priority.NORMAL
    events = await w.events(alice, 3)
    assert [e.position for e in events if isinstance(e, JobQueued)] == [1, 2, 2]


@pytest.mark.parametrize(
    ("priority", "to_front"),
    [(Priority.HIGH, False), (Priority.URGENT, False), (None, True), (Priority.LOW, True)],
)
async def test_an_owner_may_not_raise_above_normal_or_jump_the_queue(
    w: World, priority: Priority | None, to_front: bool
) -> None:
    alice, bob = await w.user(), await w.user()
    await w.submit(bob)
    job = await w.submit(alice)
    with pytest.raises(Forbidden):
        await w.control.reprioritize(alice, job.id, priority, to_front)
    assert await w.queue.position(job.id) == 2
    stored = await w.jobs.get(job.id)
    assert stored is not None and stored.params.priority is Priority.NORMAL and not stored.front


async def test_an_admin_moves_a_job_to_the_front(w: World) -> None:
    alice, bob = await w.user(100), await w.user(100)
    admin = await w.user(100, admin=True)
    urgent = await w.submitter.submit(admin, SubmitRequest(prompt="x", priority=Priority.URGENT))
    normal = await w.submit(alice)
    job = await w.submit(bob)
    assert await w.queue.position(job.id) == 3
    moved = await w.control.reprioritize(admin, job.id, None, True)
    assert moved.front and await w.queue.position(job.id) == 1
    assert await w.order() == [job.id, urgent.job.id, normal.id]
    *_, event = await w.events(bob, 2)
    assert isinstance(event, JobQueued) and event.position == 1
    high = await w.control.reprioritize(admin, job.id, Priority.HIGH, False)
    assert not high.front and await w.queue.position(job.id) == 2


async def test_only_a_waiting_job_can_be_reprioritised(w: World) -> None:
    alice = await w.user(100)
    job = await w.submit(alice)
    await dispatch(w, job, running=False)
    with pytest.raises(Conflict):
        await w.control.reprioritize(alice, job.id, Priority.LOW, False)
