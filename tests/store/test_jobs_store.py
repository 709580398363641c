"""The job store on SQLite, PostgreSQL and MariaDB: the hold and the row in one transaction,
idempotency keys, compare-and-set status changes, and settlement exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tortoise.context import TortoiseContext

from stargraph.domain.errors import InsufficientPoints, NotFound, QueueFull
from stargraph.domain.jobs import (
    Job,
    JobError,
    JobParams,
    JobStatus,
    NewImage,
    Placement,
    TranslationState,
)
from stargraph.domain.ledger import Balance, EntryKind
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId, new_job_id
from stargraph.store.db import tortoise_config
from stargraph.store.jobs import TortoiseJobStore
from stargraph.store.ledger import NewJobHold, TortoiseLedger
from stargraph.store.models import AccountRow, HoldRow, ImageRow, JobRow, LedgerEntryRow, UserRow

PRICE = 10
BACKEND = BackendId("http://127.0.0.1:8188")
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
_T = TypeVar("_T")


async def make_user(points: int = 0) -> UserId:
    name = f"u{uuid.uuid4().hex[:10]}"
    user = await UserRow.create(username=name, username_key=name, password_hash="x")
    await AccountRow.create(user=user)
    if points:
        await TortoiseLedger().grant(UserId(user.id), points, "test")
    return UserId(user.id)


def make_job(
    user: UserId,
    *,
    count: int = 2,
    key: str | None = None,
    created_at: datetime = T0,
    prompt: str = "a lighthouse at dusk",
) -> Job:
    params = JobParams(
        prompt=prompt,
        negative_prompt="模糊, blurry",
        count=count,
        width=512,
        height=768,
        steps=20,
        cfg=7.5,
        sampler="euler",
        scheduler="normal",
        model="sd15.safetensors",
        seed=2**53 - 1,
        workflow="t2i",
        priority=Priority.NORMAL,
    )
    return Job(
        id=new_job_id(),
        user_id=user,
        status=JobStatus.QUEUED,
        params=params,
        positive_prompt="(8k, best quality, masterpiece), " + prompt,
        effective_negative_prompt="blurry, bad face",
        translated_prompt=None,
        translation=TranslationState.NOT_NEEDED,
        cost=count * PRICE,
        created_at=created_at,
        graph={"3": {"class_type": "KSampler", "inputs": {"seed": 2**53 - 1, "text": '引号"{}'}}},
        idempotency_key=key,
    )


def images(job: Job, n: int) -> list[NewImage]:
    return [NewImage(i, f"{job.id}/{i}.png", 512, 768, 7 + i) for i in range(n)]


@pytest.fixture
def ledger(any_db: str) -> TortoiseLedger:
    return TortoiseLedger()


@pytest.fixture
def store(ledger: TortoiseLedger) -> TortoiseJobStore:
    return TortoiseJobStore(ledger)


async def queued_job(store: TortoiseJobStore, user: UserId, **kw: object) -> Job:
    job, created = await store.create_queued(make_job(user, **kw))  # type: ignore[arg-type]
    assert created
    return job


async def in_engine(store: TortoiseJobStore, user: UserId, *, running: bool = True) -> Job:
    job = await queued_job(store, user)
    assert await store.mark_dispatched(job, BACKEND, T0) is not None
    if running:
        assert await store.mark_running(job.id, T0) is not None
    return job


async def on_own_connections(url: str, calls: list[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run each call in a task with a Tortoise context (so a connection) of its own, all
    released together once every task is connected."""
    start = asyncio.Barrier(len(calls))

    async def one(call: Callable[[], Awaitable[_T]]) -> _T:
        context = TortoiseContext()
        with context:
            await context.init(config=tortoise_config(url))
            try:
                await context.db().execute_query("SELECT 1")
                await start.wait()
                return await call()
            finally:
                await context.close_connections()

    return await asyncio.gather(*(one(c) for c in calls))


# ---------------------------------------------------------------- create_queued


async def test_create_queued_holds_the_cost_and_writes_the_row(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    job = make_job(user, count=3)
    stored, created = await store.create_queued(job)
    assert created and stored == job
    read = await store.get(job.id)
    assert read == job  # every field round-trips (graph is left out of ==)
    assert read is not None and read.graph == job.graph
    assert read.created_at == T0 and read.created_at.tzinfo is not None
    assert await ledger.balance(user) == Balance(70, 30)
    assert await ledger.audit() == []


async def test_an_insufficient_balance_leaves_no_row_and_no_hold(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(15)
    job = make_job(user, count=2)
    with pytest.raises(InsufficientPoints):
        await store.create_queued(job)
    assert await store.get(job.id) is None
    assert not await HoldRow.exists(job_id=job.id)
    assert await ledger.balance(user) == Balance(15, 0)
    assert await ledger.audit() == []


async def test_a_reused_idempotency_key_returns_the_first_job_held_once(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    first = await queued_job(store, user, key="k-1")
    again, created = await store.create_queued(make_job(user, key="k-1", prompt="other"))
    assert not created
    assert again.id == first.id and again.params.prompt == first.params.prompt
    assert await store.get_by_idempotency_key(user, "k-1") == first
    assert await JobRow.filter(user_id=user).count() == 1
    assert await HoldRow.filter(user_id=user).count() == 1
    assert await ledger.balance(user) == Balance(80, 20)
    assert await ledger.audit() == []


async def test_the_same_key_of_two_users_makes_two_jobs(store: TortoiseJobStore) -> None:
    alice, bob = await make_user(100), await make_user(100)
    a = await queued_job(store, alice, key="shared")
    b = await queued_job(store, bob, key="shared")
    assert a.id != b.id
    assert await store.get_by_idempotency_key(bob, "shared") == b
    assert await store.get_by_idempotency_key(alice, "missing") is None


async def test_concurrent_submissions_with_one_key_make_one_job(
    any_db: str, store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    attempts = [make_job(user, key="same-key") for _ in range(6)]

    async def create(job: Job) -> tuple[Job, bool]:
        return await TortoiseJobStore(TortoiseLedger()).create_queued(job)

    outcomes = await on_own_connections(any_db, [functools.partial(create, j) for j in attempts])
    assert [created for _, created in outcomes].count(True) == 1
    assert len({job.id for job, _ in outcomes}) == 1
    assert await JobRow.filter(user_id=user).count() == 1
    assert await ledger.balance(user) == Balance(80, 20)
    assert await ledger.audit() == []


async def test_submissions_made_at_once_each_get_their_own_answer(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    """Concurrent creations share transactions where the database allows: a refused hold,
    a repeated key or a missing account affects only its own submission."""
    rich, poor, keyed = await make_user(1000), await make_user(25), await make_user(100)
    attempts = [
        *(make_job(rich, count=2) for _ in range(3)),
        *(make_job(poor, count=2) for _ in range(3)),  # 25 points: one job of 20 fits
        make_job(keyed, key="k"),
        make_job(keyed, key="k", prompt="again"),
        make_job(UserId(10**9)),  # no such account
    ]
    outcomes = await asyncio.gather(
        *(store.create_queued(job) for job in attempts), return_exceptions=True
    )
    assert all(o == (job, True) for o, job in zip(outcomes[:3], attempts, strict=False))
    poor_made = [o for o in outcomes[3:6] if isinstance(o, tuple)]
    assert len(poor_made) == 1 and poor_made[0][1]
    assert sum(isinstance(o, InsufficientPoints) for o in outcomes[3:6]) == 2
    first, second = outcomes[6], outcomes[7]
    assert isinstance(first, tuple) and isinstance(second, tuple)
    # one of the two makes the job (which one is up to the database), the other gets it back
    [winner] = [job for job, created in (first, second) if created]
    assert winner in attempts[6:8] and {first, second} == {(winner, True), (winner, False)}
    assert isinstance(outcomes[8], NotFound)
    assert await ledger.balance(rich) == Balance(940, 60)
    assert await ledger.balance(poor) == Balance(5, 20)
    assert await ledger.balance(keyed) == Balance(80, 20)
    made = {str(o[0].id) for o in outcomes if isinstance(o, tuple)}
    assert {str(i) for i in await JobRow.all().values_list("id", flat=True)} == made
    assert {str(i) for i in await HoldRow.all().values_list("job_id", flat=True)} == made
    assert await ledger.audit() == []


async def test_a_failed_batch_fails_only_its_own_submissions(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's second job waits for the next batch. Should that batch's transaction fail,
    only that submission gets the error: the first one, committed, still gets its job."""
    ledger = TortoiseLedger()
    store = TortoiseJobStore(ledger)
    user = await make_user(100)
    batches = 0
    hold_new_jobs = ledger.hold_new_jobs

    async def second_fails(holds: list[NewJobHold], cap: int | None = None) -> list[bool]:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise ConnectionError("database away")
        return await hold_new_jobs(holds, cap)

    monkeypatch.setattr(ledger, "hold_new_jobs", second_fails)
    first, second = make_job(user), make_job(user)
    outcomes = await asyncio.gather(
        store.create_queued(first), store.create_queued(second), return_exceptions=True
    )
    assert outcomes[0] == (first, True)
    assert isinstance(outcomes[1], ConnectionError)
    assert await JobRow.filter(user_id=user).count() == 1
    assert await ledger.balance(user) == Balance(80, 20)
    assert await ledger.audit() == []


async def test_the_cap_on_unfinished_jobs_holds_for_jobs_made_at_once(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    """A user with one running and one failed job sends ten at once under a cap of 3: two
    are made, the rest refused with QUEUE_FULL, having held and written nothing."""
    user = await make_user(1000)
    running = await in_engine(store, user)
    failed = await in_engine(store, user)
    await store.finish_unpaid(failed.id, JobStatus.FAILED, None, T0)
    before = await ledger.balance(user)
    jobs = [make_job(user) for _ in range(10)]
    outcomes = await asyncio.gather(
        *(store.create_queued(job, 3) for job in jobs), return_exceptions=True
    )
    made = [job for job, o in zip(jobs, outcomes, strict=True) if o == (job, True)]
    refused = [o for o in outcomes if isinstance(o, QueueFull)]
    assert (len(made), len(refused)) == (2, 8)
    assert await store.count_unfinished(user) == 3
    ids = set(await JobRow.filter(user_id=user).values_list("id", flat=True))
    assert {str(i) for i in ids} == {str(j.id) for j in (running, failed, *made)}
    cost = sum(job.cost for job in made)
    assert await ledger.balance(user) == Balance(before.available - cost, before.frozen + cost)
    assert await ledger.audit() == []


async def test_the_cap_holds_across_processes(
    any_db: str, store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    """Submissions for one user from several API processes at once (each its own
    connection) never take the user past the cap, however their statements interleave."""
    user = await make_user(1000)
    await in_engine(store, user)
    attempts = [make_job(user) for _ in range(8)]

    async def create(job: Job) -> tuple[Job, bool] | QueueFull:
        try:
            return await TortoiseJobStore(TortoiseLedger()).create_queued(job, 3)
        except QueueFull as refused:
            return refused

    outcomes = await on_own_connections(any_db, [functools.partial(create, j) for j in attempts])
    made = [o for o in outcomes if isinstance(o, tuple)]
    assert (len(made), len(outcomes) - len(made)) == (2, 6)
    assert await store.count_unfinished(user) == 3
    assert await ledger.balance(user) == Balance(1000 - 3 * PRICE * 2, 3 * PRICE * 2)
    assert await ledger.audit() == []


async def test_free_jobs_are_capped_too(store: TortoiseJobStore) -> None:
    user = await make_user(0)
    first, second = (dataclasses.replace(make_job(user), cost=0) for _ in range(2))
    assert await store.create_queued(first, 1) == (first, True)
    with pytest.raises(QueueFull):
        await store.create_queued(second, 1)
    assert await store.count_unfinished(user) == 1


async def test_a_capped_hold_refused_for_points_says_so(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    """Under the cap, a job the balance cannot pay for is refused for its points."""
    user = await make_user(5)
    with pytest.raises(InsufficientPoints):
        await store.create_queued(make_job(user), 3)
    assert await ledger.balance(user) == Balance(5, 0)


SUBMISSIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4)), max_size=24)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(balances=st.lists(st.integers(0, 120), min_size=4, max_size=4), submissions=SUBMISSIONS)
async def test_points_hold_under_any_mix_of_concurrent_submissions(
    store: TortoiseJobStore,
    ledger: TortoiseLedger,
    balances: list[int],
    submissions: list[tuple[int, int]],
) -> None:
    """Whatever mix of users and costs arrives at once: each user's frozen points are the
    costs of the jobs made, a refused job did not fit even what is left now, and the audit
    stays clean."""
    users = [await make_user(points) for points in balances]
    jobs = [make_job(users[who], count=count) for who, count in submissions]
    outcomes = await asyncio.gather(*(store.create_queued(j) for j in jobs), return_exceptions=True)
    for n, user in enumerate(users):
        mine = [(job, o) for job, o in zip(jobs, outcomes, strict=True) if job.user_id == user]
        held = sum(job.cost for job, o in mine if o == (job, True))
        balance = await ledger.balance(user)
        assert balance == Balance(balances[n] - held, held)
        refused = [job for job, o in mine if isinstance(o, InsufficientPoints)]
        assert len(refused) + sum(o == (job, True) for job, o in mine) == len(mine)
        assert all(job.cost > balance.available for job in refused)
    assert await ledger.audit() == []


# ---------------------------------------------------------------- compare-and-set moves


async def test_dispatch_run_and_back_to_queue_are_compare_and_set(
    store: TortoiseJobStore,
) -> None:
    user = await make_user(100)
    job = await queued_job(store, user)
    assert await store.mark_running(job.id, T0) is None  # not dispatched yet
    assert await store.back_to_queue(job.id) is None  # already waiting

    dispatched = await store.mark_dispatched(job, BACKEND, T0)
    assert dispatched is not None
    assert (dispatched.status, dispatched.backend, dispatched.attempts) == (
        JobStatus.DISPATCHED, BACKEND, 1,
    )  # fmt: skip
    assert dispatched.dispatched_at == T0
    assert dispatched == await store.get(job.id)  # what it returns is what was stored
    assert await store.mark_dispatched(job, BACKEND, T0) is None  # someone else has it

    running = await store.mark_running(job.id, T0 + timedelta(seconds=1))
    assert running is not None and running.status is JobStatus.RUNNING
    assert running.started_at == T0 + timedelta(seconds=1)
    assert await store.mark_running(job.id, T0) is None
    await store.record_progress(job.id, 5, 20)

    back = await store.back_to_queue(job.id)
    assert back is not None and back.status is JobStatus.QUEUED
    assert (back.backend, back.dispatched_at, back.started_at, back.progress_step) == (
        None, None, None, None,
    )  # fmt: skip
    assert back.attempts == 1  # attempts count dispatches, kept across requeues
    # a copy read before the first dispatch cannot count an attempt twice
    assert await store.mark_dispatched(job, BACKEND, T0) is None
    again = await store.mark_dispatched(back, BACKEND, T0)
    assert again is not None and again.attempts == 2
    assert await store.get(job.id) == again


async def test_a_dispatch_never_sent_is_undone_with_its_attempt(
    any_db: str, store: TortoiseJobStore
) -> None:
    user = await make_user(100)
    job = await queued_job(store, user)
    assert await store.undo_dispatch(job) is None  # not dispatched
    dispatched = await store.mark_dispatched(job, BACKEND, T0)
    assert dispatched is not None

    undone = await store.undo_dispatch(dispatched)
    assert undone is not None
    assert (undone.status, undone.backend, undone.dispatched_at, undone.attempts) == (
        JobStatus.QUEUED, None, None, 0,
    )  # fmt: skip
    assert undone == await store.get(job.id)
    assert await store.undo_dispatch(dispatched) is None  # once only
    again = await store.mark_dispatched(undone, BACKEND, T0)
    assert again is not None and again.attempts == 1
    assert await store.mark_running(job.id, T0) is not None
    assert await store.undo_dispatch(again) is None  # it was sent: it runs
    running = await store.get(job.id)
    assert running is not None and running.status is JobStatus.RUNNING and running.attempts == 1


async def test_only_one_of_concurrent_dispatchers_wins(
    any_db: str, store: TortoiseJobStore
) -> None:
    user = await make_user(100)
    job = await queued_job(store, user)
    backends = [BackendId(f"http://b{i}") for i in range(5)]

    async def dispatch(backend: BackendId) -> Job | None:
        return await TortoiseJobStore(TortoiseLedger()).mark_dispatched(job, backend, T0)

    results = await on_own_connections(any_db, [functools.partial(dispatch, b) for b in backends])
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await store.get(job.id)
    assert stored is not None and stored.backend == winners[0].backend and stored.attempts == 1


async def test_progress_is_recorded_only_in_the_engine(store: TortoiseJobStore) -> None:
    user = await make_user(100)
    waiting = await queued_job(store, user)
    await store.record_progress(waiting.id, 1, 20)
    running = await in_engine(store, user)
    await store.record_progress(running.id, 7, 20)
    w, r = await store.get(waiting.id), await store.get(running.id)
    assert w is not None and w.progress_step is None
    assert r is not None and (r.progress_step, r.progress_max) == (7, 20)


async def test_many_jobs_progress_is_recorded_in_one_call(store: TortoiseJobStore) -> None:
    user = await make_user(100)
    waiting = await queued_job(store, user)
    first, second = await in_engine(store, user), await in_engine(store, user, running=False)
    untouched = await in_engine(store, user)
    await store.record_progress(untouched.id, 3, 30)
    await store.record_progress_many({waiting.id: (1, 20), first.id: (7, 20), second.id: (2, 9)})
    found = {j.id: (j.progress_step, j.progress_max) for j in await store.in_engine()}
    assert found == {first.id: (7, 20), second.id: (2, 9), untouched.id: (3, 30)}
    w = await store.get(waiting.id)
    assert w is not None and w.progress_step is None


async def test_placements_name_the_backend_and_times_of_jobs_in_the_engine_only(
    store: TortoiseJobStore,
) -> None:
    user = await make_user(100)
    waiting = await queued_job(store, user)
    sent, running = await in_engine(store, user, running=False), await in_engine(store, user)
    ended = await in_engine(store, user)
    assert await store.finish_unpaid(ended.id, JobStatus.FAILED, None, T0) is not None
    placed = await store.placements()
    assert placed == {
        sent.id: Placement(BACKEND, T0, None),
        running.id: Placement(BACKEND, T0, T0),
    }
    assert waiting.id not in placed


async def test_set_priority_changes_only_waiting_jobs(store: TortoiseJobStore) -> None:
    user = await make_user(100)
    job = await queued_job(store, user)
    low = await store.set_priority(job.id, Priority.LOW, False)
    assert low is not None and low.params.priority is Priority.LOW and not low.front
    same = await store.set_priority(job.id, Priority.LOW, False)  # no row changes on MariaDB
    assert same is not None and same.params.priority is Priority.LOW
    front = await store.set_priority(job.id, Priority.URGENT, True)
    assert front is not None and front.front and front.params.priority is Priority.URGENT
    running = await in_engine(store, user)
    assert await store.set_priority(running.id, Priority.LOW, False) is None
    assert await store.set_priority(new_job_id(), Priority.LOW, False) is None


# ---------------------------------------------------------------- settlement


async def test_succeed_stores_images_and_captures_price_times_images(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    job = await in_engine(store, user)  # count 2: holds 20
    done = await store.succeed(job.id, images(job, 1), PRICE, T0 + timedelta(minutes=1))
    assert done is not None
    assert (done.status, done.charged, done.finished_at) == (
        JobStatus.SUCCEEDED, PRICE, T0 + timedelta(minutes=1),
    )  # fmt: skip
    assert await ImageRow.filter(job_id=job.id).count() == 1
    assert await ledger.balance(user) == Balance(90, 0)
    moves = await LedgerEntryRow.filter(job_id=job.id).order_by("id").values_list("kind", "amount")
    assert moves == [(EntryKind.HOLD.value, 20), (EntryKind.CAPTURE.value, 10),
                     (EntryKind.RELEASE.value, 10)]  # fmt: skip
    assert await store.succeed(job.id, images(job, 2), PRICE, T0) is None
    assert await store.finish_unpaid(job.id, JobStatus.FAILED, None, T0) is None
    assert await ImageRow.filter(job_id=job.id).count() == 1
    assert await ledger.audit() == []


async def test_succeed_needs_a_job_in_the_engine(store: TortoiseJobStore) -> None:
    user = await make_user(100)
    job = await queued_job(store, user)
    assert await store.succeed(job.id, images(job, 1), PRICE, T0) is None
    assert await store.succeed(new_job_id(), [], PRICE, T0) is None


async def test_concurrent_endings_settle_exactly_once(
    any_db: str, store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    job = await in_engine(store, user)

    def succeed(n: int) -> Callable[[], Awaitable[Job | None]]:
        return lambda: TortoiseJobStore(TortoiseLedger()).succeed(job.id, images(job, n), PRICE, T0)

    def cancel() -> Awaitable[Job | None]:
        return TortoiseJobStore(TortoiseLedger()).finish_unpaid(
            job.id, JobStatus.CANCELLED, None, T0
        )

    results = await on_own_connections(any_db, [succeed(2), succeed(1), succeed(2), cancel])
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    won = winners[0]
    produced = await ImageRow.filter(job_id=job.id).count()
    if won.status is JobStatus.SUCCEEDED:
        assert produced in (1, 2) and won.charged == PRICE * produced
    else:
        assert won.status is JobStatus.CANCELLED and produced == 0 and won.charged == 0
    assert await ledger.balance(user) == Balance(100 - (won.charged or 0), 0)
    assert await HoldRow.filter(job_id=job.id, settled=True).count() == 1
    assert await ledger.audit() == []


async def test_concurrent_success_in_one_process_settles_once(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    job = await in_engine(store, user)
    results = await asyncio.gather(
        *(store.succeed(job.id, images(job, 2), PRICE, T0) for _ in range(8))
    )
    assert sum(r is not None for r in results) == 1
    assert await ImageRow.filter(job_id=job.id).count() == 2
    assert await ledger.balance(user) == Balance(80, 0)
    assert await ledger.audit() == []


async def test_finish_unpaid_releases_the_whole_hold(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    job = await in_engine(store, user)
    failed = await store.finish_unpaid(job.id, JobStatus.FAILED, JobError("ENGINE", "x" * 5000), T0)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.charged == 0 and failed.finished_at == T0
    assert failed.error is not None and failed.error.code == "ENGINE"
    assert 0 < len(failed.error.message) <= 2000
    assert await ledger.balance(user) == Balance(100, 0)
    assert await store.finish_unpaid(job.id, JobStatus.CANCELLED, None, T0) is None
    assert await ledger.audit() == []


async def test_finish_unpaid_respects_only_from(
    store: TortoiseJobStore, ledger: TortoiseLedger
) -> None:
    user = await make_user(100)
    job = await in_engine(store, user)
    only_waiting = frozenset({JobStatus.QUEUED})
    assert await store.finish_unpaid(job.id, JobStatus.CANCELLED, None, T0, only_waiting) is None
    assert await ledger.balance(user) == Balance(80, 20)
    waiting = await queued_job(store, user)
    cancelled = await store.finish_unpaid(waiting.id, JobStatus.CANCELLED, None, T0, only_waiting)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert await ledger.balance(user) == Balance(80, 20)
    with pytest.raises(ValueError):
        await store.finish_unpaid(job.id, JobStatus.SUCCEEDED, None, T0)


# ---------------------------------------------------------------- reading


async def test_page_for_user_is_newest_first_and_continues_after(
    store: TortoiseJobStore,
) -> None:
    user, other = await make_user(1000), await make_user(1000)
    made = [
        await queued_job(store, user, created_at=T0 + timedelta(seconds=i // 2), count=1)
        for i in range(7)  # pairs share a timestamp: the id breaks the tie
    ]
    await queued_job(store, other, created_at=T0 + timedelta(hours=1), count=1)
    expected = sorted(made, key=lambda j: (j.created_at, j.id), reverse=True)
    seen: list[JobId] = []
    after: JobId | None = None
    while True:
        page = await store.page_for_user(user, None, 3, after)
        seen += [j.id for j in page.jobs]
        if not page.has_more:
            break
        after = page.jobs[-1].id
    assert seen == [j.id for j in expected]
    everyone = await store.page_for_user(None, None, 100, None)
    assert len(everyone.jobs) == 8 and everyone.jobs[0].user_id == other


async def test_page_for_user_filters_by_status(store: TortoiseJobStore) -> None:
    user = await make_user(1000)
    waiting = await queued_job(store, user)
    running = await in_engine(store, user)
    page = await store.page_for_user(user, frozenset({JobStatus.RUNNING}), 10, None)
    assert [j.id for j in page.jobs] == [running.id] and not page.has_more
    page = await store.page_for_user(user, frozenset({JobStatus.QUEUED}), 10, None)
    assert [j.id for j in page.jobs] == [waiting.id]


async def test_count_unfinished_queued_and_in_engine(store: TortoiseJobStore) -> None:
    user, other = await make_user(1000), await make_user(1000)
    first = await queued_job(store, user, created_at=T0)
    second = await queued_job(store, user, created_at=T0 + timedelta(seconds=1))
    running = await in_engine(store, user)
    ended = await in_engine(store, user)
    await store.finish_unpaid(ended.id, JobStatus.FAILED, None, T0)
    await queued_job(store, other)
    assert await store.count_unfinished(user) == 3
    assert await store.count_unfinished(other) == 1
    queued = [j for j in await store.queued() if j.user_id == user]
    assert queued == [QueuedJob(j.id, user, j.params.priority, j.front) for j in (first, second)]
    assert await store.count_queued() == 3
    assert [j.id for j in await store.in_engine(BACKEND)] == [running.id]
    assert await store.in_engine(BackendId("http://elsewhere")) == []
    assert running.id in [j.id for j in await store.in_engine()]
