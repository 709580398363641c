"""Submitting end to end on real SQLite and Redis with the fake Ollama: what is held, stored,
queued and announced, and that every refusal changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stargraph.domain.errors import (
    BadUserInput,
    Forbidden,
    InsufficientPoints,
    QueueFull,
    RateLimited,
    TranslationUnavailable,
)
from stargraph.domain.events import JobEvent, JobQueued
from stargraph.domain.jobs import JobStatus, TranslationState
from stargraph.domain.ledger import Balance
from stargraph.domain.params import SubmitRequest
from stargraph.domain.queue import QueuedJob
from stargraph.domain.submit import restore_queue
from stargraph.domain.types import BackendId, JobId, Priority
from stargraph.domain.workflows import filename_prefix
from stargraph.store.models import JobRow
from tests.broker.test_queue_announced import stored
from tests.domain.test_submit_support import (
    PREFIX,
    PRICE,
    SUFFIX,
    SimulatedCrash,
    World,
    now,
    world,
)

BACKEND = BackendId("http://127.0.0.1:8188")


@pytest.fixture
async def w(db: str, redis: Redis, redis_prefix: str) -> AsyncIterator[World]:
    async with world(redis, redis_prefix) as built:
        yield built


# ---------------------------------------------------------------- the happy paths


async def test_an_english_prompt_is_held_queued_and_announced(w: World) -> None:
    alice = await w.user(100)
    submitted = await w.submitter.submit(
        alice, SubmitRequest(prompt="a red fox", negative_prompt="blurry", count=3)
    )
    job = submitted.job
    assert submitted.position == 1 == await w.queue.position(job.id)
    assert job.status is JobStatus.QUEUED and job.cost == 3 * PRICE
    assert job.translation is TranslationState.NOT_NEEDED and job.translated_prompt is None
    assert job.positive_prompt == PREFIX + "a red fox"
    assert job.effective_negative_prompt == "blurry" + SUFFIX
    assert job.graph["6"]["inputs"]["text"] == job.positive_prompt
    assert job.graph["7"]["inputs"]["text"] == job.effective_negative_prompt
    assert job.graph["9"]["inputs"]["filename_prefix"] == filename_prefix(job.id)
    assert await w.jobs.get(job.id) == job
    assert await w.ledger.balance(alice.user_id) == Balance(70, 30)
    assert w.ollama.chat_bodies() == []  # English never reaches the model
    [event] = await w.events(alice, 1)
    assert isinstance(event, JobQueued)
    assert (event.job_id, event.position, event.status) == (job.id, 1, JobStatus.QUEUED)
    assert await w.ledger.audit() == []


async def test_a_chinese_prompt_is_translated_and_enhanced(w: World) -> None:
    alice = await w.user()
    job = await w.submit(alice, "长发少女，微笑，(樱花:1.2)", negative_prompt="模糊，丑陋")
    assert job.translation is TranslationState.TRANSLATED
    assert job.translated_prompt == "long-haired girl, smile, (cherry blossoms:1.2)"
    assert job.params.prompt == "长发少女，微笑，(樱花:1.2)"  # what the user wrote is kept
    assert job.positive_prompt == PREFIX + "long-haired girl, smile, (cherry blossoms:1.2)"
    assert job.effective_negative_prompt == "blurry, ugly" + SUFFIX
    assert job.graph["6"]["inputs"]["text"] == job.positive_prompt
    assert job.graph["7"]["inputs"]["text"] == job.effective_negative_prompt
    assert w.ollama.asked_texts() == ["长发少女", "微笑", "樱花", "模糊", "丑陋"]


async def test_a_chinese_negative_prompt_alone_is_translated(w: World) -> None:
    alice = await w.user()
    job = await w.submit(alice, "a red fox", negative_prompt="模糊")
    assert job.translation is TranslationState.TRANSLATED
    assert job.translated_prompt is None  # the positive needed none
    assert job.positive_prompt == PREFIX + "a red fox"
    assert job.effective_negative_prompt == "blurry" + SUFFIX
    assert w.ollama.asked_texts() == ["模糊"]


async def test_the_returned_position_is_exact(w: World) -> None:
    alice, bob = await w.user(1000), await w.user(1000)
    admin = await w.user(1000, admin=True)
    made = []
    for who, priority in [(alice, None), (alice, None), (alice, None), (bob, None),
                          (alice, "LOW"), (admin, "HIGH"), (bob, None)]:  # fmt: skip
        request = SubmitRequest(
            prompt="x", priority=Priority[priority] if priority else Priority.NORMAL
        )
        submitted = await w.submitter.submit(who, request)
        assert submitted.position == await w.queue.position(submitted.job.id)
        made.append(submitted.job.id)
    a1, a2, a3, b1, a_low, high, b2 = made
    # HIGH first; in NORMAL, bob's jobs take every other turn; LOW last
    assert await w.order() == [high, a1, b1, a2, b2, a3, a_low]
    claimed = []
    while (claim := await w.queue.claim(BACKEND, 30)) is not None:
        claimed.append(claim.job_id)
    assert claimed == [high, a1, b1, a2, b2, a3, a_low]


async def test_the_same_idempotency_key_gives_the_same_job_held_once(w: World) -> None:
    alice = await w.user(100)
    first = await w.submitter.submit(alice, SubmitRequest(prompt="x", idempotency_key="k1"))
    again = await w.submitter.submit(alice, SubmitRequest(prompt="y", idempotency_key="k1"))
    assert again.job == first.job and again.position == first.position == 1
    racing = await asyncio.gather(
        *(w.submitter.submit(alice, SubmitRequest(prompt="z", idempotency_key="k2"))
          for _ in range(5))
    )  # fmt: skip
    assert len({s.job.id for s in racing}) == 1
    assert {s.position for s in racing} == {2}
    assert await w.queue.length() == 2
    assert await w.ledger.balance(alice.user_id) == Balance(80, 20)
    assert await w.ledger.audit() == []


async def test_an_admin_may_submit_high_and_urgent(w: World) -> None:
    admin, alice = await w.user(admin=True), await w.user()
    normal = await w.submit(alice)
    urgent = await w.submitter.submit(admin, SubmitRequest(prompt="x", priority=Priority.URGENT))
    assert urgent.position == 1 and await w.queue.position(normal.id) == 2


# ---------------------------------------------------------------- refusals change nothing


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "长发少女", "width": 513}, "width"),
        ({"prompt": "长发少女", "count": 9}, "count"),
        ({"prompt": "x", "sampler": "not-offered"}, "sampler"),
        ({"prompt": "x", "model": "missing.ckpt"}, "model"),
        ({"prompt": "x\x00"}, "prompt"),
        ({"prompt": "x", "workflow": "nope"}, "workflow"),
        ({"prompt": "x", "idempotency_key": ""}, "idempotencyKey"),
    ],
)
async def test_invalid_requests_change_nothing(
    db: str, redis: Redis, redis_prefix: str, fields: dict[str, object], field: str
) -> None:
    async with world(redis, redis_prefix, submits_per_minute=1) as w:
        alice = await w.user()
        before = await w.snapshot(alice)
        for _ in range(3):
            with pytest.raises(BadUserInput) as refused:
                await w.submitter.submit(alice, SubmitRequest(**fields))  # type: ignore[arg-type]
            assert refused.value.field == field
        assert await w.snapshot(alice) == before
        await w.submit(alice)  # the refusals used none of the one submission a minute


@pytest.mark.parametrize("priority", [Priority.HIGH, Priority.URGENT])
async def test_users_cannot_submit_high_or_urgent(w: World, priority: Priority) -> None:
    alice = await w.user()
    before = await w.snapshot(alice)
    with pytest.raises(Forbidden):
        await w.submitter.submit(alice, SubmitRequest(prompt="长发少女", priority=priority))
    assert await w.snapshot(alice) == before


async def test_the_rate_limit_refuses_and_changes_nothing(
    db: str, redis: Redis, redis_prefix: str
) -> None:
    async with world(redis, redis_prefix, submits_per_minute=2) as w:
        alice, bob = await w.user(), await w.user()
        await w.submit(alice)
        await w.submit(alice)
        before = await w.snapshot(alice)
        with pytest.raises(RateLimited) as refused:
            await w.submit(alice, "长发少女")
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
        assert await w.snapshot(alice) == before
        await w.submit(bob)  # per user


async def test_the_queued_jobs_cap_refuses_and_changes_nothing(
    db: str, redis: Redis, redis_prefix: str
) -> None:
    async with world(redis, redis_prefix, max_queued=2, submits_per_minute=5) as w:
        alice = await w.user()
        first = await w.submit(alice)
        await w.submit(alice)
        before = await w.snapshot(alice)
        for prompt in ("长发少女", "a red fox"):  # the model is not asked for a refused job
            with pytest.raises(QueueFull):
                await w.submit(alice, prompt)
        assert await w.snapshot(alice) == before
        await w.control.cancel(alice, first.id)
        await w.submit(alice)  # room again
        with pytest.raises(RateLimited):  # each refusal used a turn, as a refused hold does
            await w.submit(alice)


async def test_insufficient_points_change_nothing(w: World) -> None:
    alice = await w.user(15)
    before = await w.snapshot(alice)
    with pytest.raises(InsufficientPoints):
        await w.submit(alice, count=2)
    assert await w.snapshot(alice) == before
    assert await w.ledger.audit() == []


@pytest.mark.parametrize(
    ("prompt", "negative"), [("长发少女", ""), ("a red fox", "模糊")], ids=["prompt", "negative"]
)
async def test_translation_unavailable_holds_and_queues_nothing(
    db: str, redis: Redis, redis_prefix: str, prompt: str, negative: str
) -> None:
    async with world(redis, redis_prefix, ollama="down", fallback="error") as w:
        alice = await w.user()
        before = await w.snapshot(alice)
        with pytest.raises(TranslationUnavailable):
            await w.submit(alice, prompt, negative_prompt=negative)
        assert await w.snapshot(alice) == before
        english = await w.submit(alice, "a red fox")  # English needs no model
        assert english.translation is TranslationState.NOT_NEEDED


async def test_passthrough_sends_the_original_and_records_it(
    db: str, redis: Redis, redis_prefix: str
) -> None:
    async with world(redis, redis_prefix, ollama="down", fallback="passthrough") as w:
        alice = await w.user()
        job = await w.submit(alice, "长发少女，微笑", negative_prompt="模糊")
        assert job.translation is TranslationState.PASSTHROUGH
        assert job.translated_prompt is None
        assert job.positive_prompt == PREFIX + "长发少女, 微笑"  # punctuation normalised
        assert job.effective_negative_prompt == "模糊" + SUFFIX
        assert await w.queue.position(job.id) == 1


async def test_a_negative_that_falls_back_makes_the_job_passthrough(
    db: str, redis: Redis, redis_prefix: str
) -> None:
    async with world(redis, redis_prefix, fallback="passthrough") as w:
        alice = await w.user()
        w.ollama.next_modes = ["normal", "garbage", "garbage"]  # the negative fails twice
        job = await w.submit(alice, "长发少女", negative_prompt="模糊")
        assert job.translation is TranslationState.PASSTHROUGH
        assert job.translated_prompt == "long-haired girl"  # the positive's English stays
        assert job.effective_negative_prompt == "模糊" + SUFFIX


# ---------------------------------------------------------------- crashes and restores


async def test_the_job_and_its_queued_event_enter_redis_in_one_step(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await w.user(100), await w.user(100)
    await w.submit(alice)
    separate: list[str] = []

    async def enqueue_alone(job: QueuedJob) -> int:
        separate.append("enqueue")
        return 0

    async def publish_alone(event: JobEvent, **options: bool) -> str:
        separate.append(type(event).__name__)
        return ""

    monkeypatch.setattr(w.queue, "enqueue", enqueue_alone)
    monkeypatch.setattr(w.bus, "publish", publish_alone)
    job = await w.submit(bob)

    # a dispatcher claiming between two separate calls could publish JobDispatched first
    assert separate == []
    assert await w.queue.position(job.id) == 2
    [event] = await stored(w.redis, w.prefix, bob.user_id)
    assert (event["kind"], event["job_id"], event["position"]) == ("queued", job.id, 2)


async def test_the_queued_event_is_out_before_the_dispatchers_wake_up(w: World) -> None:
    alice = await w.user(100)
    events_channel = f"{{{w.prefix}}}:events".encode()
    work_channel = w.queue.keys.channel.encode()
    listener = w.redis.pubsub()
    await listener.subscribe(events_channel, work_channel)
    try:
        job = await w.submit(alice)
        heard: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(10):
            while not any(channel == work_channel for channel, _ in heard):
                message = await listener.get_message(timeout=1)
                if message is not None and message["type"] == "message":
                    heard.append((message["channel"], message["data"]))
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    assert [channel for channel, _ in heard] == [events_channel, work_channel]
    assert b'"kind":"queued"' in heard[0][1] and job.id.encode() in heard[0][1]


async def test_a_pass_over_a_queue_that_holds_every_queued_job_lists_no_rows(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await w.user(100)
    for _ in range(3):
        await w.submit(alice)
    assert await w.queue.claim(BackendId("http://gpu-1"), 60) is not None  # one is leased
    listings: list[int] = []
    listed = w.jobs.queued

    async def counted() -> list[QueuedJob]:
        listings.append(1)
        return await listed()

    monkeypatch.setattr(w.jobs, "queued", counted)
    assert await restore_queue(w.jobs, w.queue) == []
    assert listings == []  # housekeeping cost two counts, not a read of every waiting row


async def test_a_job_whose_enqueue_never_happened_is_restored(w: World) -> None:
    alice = await w.user(100)
    waiting = await w.submit(alice)
    with pytest.raises(SimulatedCrash):
        await w.crashing.submit(alice, SubmitRequest(prompt="lost?", idempotency_key="k"))
    [row] = await JobRow.filter(prompt="lost?")
    assert await w.queue.position(JobId(row.id)) is None
    assert await w.ledger.balance(alice.user_id) == Balance(80, 20)

    assert await restore_queue(w.jobs, w.queue) == [row.id]
    assert await w.order() == [waiting.id, row.id]
    told = [(e.job_id, e.position) for e in await w.events(alice, 2) if isinstance(e, JobQueued)]
    assert told == [(waiting.id, 1), (row.id, 2)]  # its owner hears of it as from a submit
    assert await restore_queue(w.jobs, w.queue) == []  # nothing missing any more
    again = await w.submitter.submit(alice, SubmitRequest(prompt="x", idempotency_key="k"))
    assert again.job.id == row.id and again.position == 2


async def test_a_retry_with_the_key_enqueues_a_job_whose_enqueue_was_lost(w: World) -> None:
    alice = await w.user(100)
    with pytest.raises(SimulatedCrash):
        await w.crashing.submit(alice, SubmitRequest(prompt="x", idempotency_key="retry"))
    retried = await w.submitter.submit(alice, SubmitRequest(prompt="x", idempotency_key="retry"))
    assert retried.position == 1 == await w.queue.position(retried.job.id)
    assert await w.ledger.balance(alice.user_id) == Balance(90, 10)


async def test_an_emptied_redis_is_restored_in_the_same_order(w: World) -> None:
    alice, bob, carol = await w.user(1000), await w.user(1000), await w.user(1000)
    admin = await w.user(1000, admin=True)
    plan = [alice, alice, alice, bob, carol, bob, alice, carol, admin, bob]
    for i, who in enumerate(plan):
        priority = Priority.HIGH if who is admin else (Priority.LOW if i == 6 else None)
        await w.submitter.submit(
            who, SubmitRequest(prompt=f"job {i}", priority=priority or Priority.NORMAL)
        )
    before = await w.order()
    assert len(before) == len(plan)

    keys = [k async for k in w.redis.scan_iter(match=f"{{{w.prefix}}}*")]
    await w.redis.delete(*keys)
    assert await w.queue.length() == 0

    restored = await restore_queue(w.jobs, w.queue)
    assert sorted(restored) == sorted(before)
    assert await w.order() == before


async def test_restore_leaves_claimed_and_dispatched_jobs_alone(w: World) -> None:
    alice = await w.user(100)
    leased = await w.submit(alice, "leased")
    dispatched = await w.submit(alice, "dispatched")
    waiting = await w.submit(alice, "waiting")
    first = await w.queue.claim(BACKEND, 30)
    second = await w.queue.claim(BACKEND, 30)
    assert first is not None and second is not None
    assert (first.job_id, second.job_id) == (leased.id, dispatched.id)
    # a dispatcher holds `leased` but has not marked it yet; `dispatched` went all the way
    assert await w.jobs.mark_dispatched(dispatched, BACKEND, now()) is not None
    assert await w.queue.ack(second)

    assert await restore_queue(w.jobs, w.queue) == []
    assert await w.order() == [waiting.id]  # nothing enqueued a second time
    assert await w.jobs.mark_dispatched(leased, BACKEND, now()) is not None
    assert await w.queue.ack(first)
    assert await restore_queue(w.jobs, w.queue) == []
    assert await w.order() == [waiting.id]


async def test_a_parked_job_back_in_queued_is_put_back_at_its_old_place(w: World) -> None:
    """A dispatch undone (a standby stood down) whose process died before it requeued the
    job: the row is QUEUED, the queue holds the job parked. The sweeper puts it back."""
    alice = await w.user(100)
    first = await w.submit(alice, "first")
    second = await w.submit(alice, "second")
    claim = await w.queue.claim(BACKEND, 30)
    assert claim is not None and claim.job_id == first.id
    dispatched = await w.jobs.mark_dispatched(first, BACKEND, now())
    assert dispatched is not None and await w.queue.ack(claim)
    assert await w.jobs.undo_dispatch(dispatched) is not None
    assert await w.order() == [second.id]

    assert await restore_queue(w.jobs, w.queue) == [first.id]
    assert await w.order() == [first.id, second.id]
    kinds = [e["kind"] for e in await stored(w.redis, w.prefix, alice.user_id)]
    assert kinds == ["queued", "queued"]  # each submit's; a put-back from parked is silent


async def test_a_job_the_sweeper_queued_and_a_dispatcher_sent_before_its_enqueue_stays_sent(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the sweeper can find a job between its submitter's commit and enqueue and
    queue it (telling its owner); a dispatcher can then send it before the submitter's
    enqueue lands. That late enqueue must neither put the job back in the queue nor tell its
    owner a second time that it waits."""
    alice = await w.user(100)
    enqueue = w.queue.enqueue_announced
    submitters: list[JobId] = []

    async def sweeper_and_dispatcher_first(job: QueuedJob, event: JobQueued) -> int:
        if submitters:  # the sweeper's own put-back
            return await enqueue(job, event)
        submitters.append(job.job_id)
        assert await restore_queue(w.jobs, w.queue) == [job.job_id]
        claim = await w.queue.claim(BACKEND, 30)
        current = await w.jobs.get(job.job_id)
        assert claim is not None and current is not None
        assert await w.jobs.mark_dispatched(current, BACKEND, now()) is not None
        assert await w.queue.ack(claim)
        return await enqueue(job, event)

    monkeypatch.setattr(w.queue, "enqueue_announced", sweeper_and_dispatcher_first)
    submitted = await w.submitter.submit(alice, SubmitRequest(prompt="a red fox"))
    assert submitted.position is None  # not waiting: no queue position to show
    assert await w.status(submitted.job) is JobStatus.DISPATCHED
    assert await w.queue.length() == 0 and await w.order() == []
    assert [e["kind"] for e in await stored(w.redis, w.prefix, alice.user_id)] == ["queued"]
