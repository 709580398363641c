"""`enqueue_announced`: the job enters the queue and its JobQueued event its owner's stream in
one step, and only then are the dispatchers told; on the in-process Redis and a real server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.events import JobQueued
from stargraph.domain.jobs import JobStatus
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId

ANN, BOB = UserId(7), UserId(8)
BACKEND = BackendId("http://127.0.0.1:8188")


def queued(job_id: str, user: UserId) -> tuple[QueuedJob, JobQueued]:
    at = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    event = JobQueued(
        job_id=JobId(job_id), user_id=user, at=at, status=JobStatus.QUEUED, position=None
    )
    return QueuedJob(JobId(job_id), user, Priority.NORMAL), event


async def stored(redis: Redis, prefix: str, user: UserId) -> list[dict[str, object]]:
    """The events in the user's stream, oldest first."""
    found: list[dict[str, object]] = []
    for _, fields in await redis.xrange(f"{{{prefix}}}:events:user:{user}") or []:
        assert fields is not None
        found.append(json.loads(fields[b"e"]))
    return found


async def channels_heard(listener: PubSub, n: int) -> list[str]:
    """The channels of the next `n` messages, in the order they came."""
    heard: list[str] = []
    async with asyncio.timeout(10):
        while len(heard) < n:
            message = await listener.get_message(timeout=1)
            if message is not None and message["type"] == "message":
                heard.append(message["channel"].decode())
    return heard


async def test_the_event_carries_the_position_the_job_got(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    assert await queue.enqueue_announced(*queued("a0", ANN)) == 1
    assert await queue.enqueue_announced(*queued("a1", ANN)) == 2
    assert await queue.enqueue_announced(*queued("b0", BOB)) == 2  # Bob's turn comes first

    ann, bob = (
        await stored(any_redis, redis_prefix, ANN),
        await stored(any_redis, redis_prefix, BOB),
    )
    assert [(e["job_id"], e["position"]) for e in ann] == [("a0", 1), ("a1", 2)]
    assert [(e["job_id"], e["position"], e["kind"]) for e in bob] == [("b0", 2, "queued")]
    assert await queue.position(JobId("b0")) == 2


async def test_the_event_goes_out_before_the_dispatchers_hear_of_the_job(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    events, moved = f"{{{redis_prefix}}}:events", f"{{{redis_prefix}}}:queue-moved"
    listener = any_redis.pubsub()
    await listener.subscribe(events, moved, queue.keys.channel)
    try:
        await queue.enqueue_announced(*queued("a0", ANN))
        heard = await channels_heard(listener, 3)
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    assert heard == [events, moved, queue.keys.channel]


async def test_a_queue_built_without_its_event_bus_refuses(
    any_redis: Redis, redis_prefix: str
) -> None:
    bare = RedisJobQueue(any_redis, redis_prefix)
    try:
        with pytest.raises(RuntimeError):
            await bare.enqueue_announced(*queued("a0", ANN))
        assert await bare.length() == 0
    finally:
        await bare.aclose()


async def test_submissions_at_once_each_get_a_place_and_an_event_with_it(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    """Concurrent calls share pipelines; each job still gets its own place, and its event
    the place it got."""
    jobs = [queued(f"j{n}", UserId(100 + n)) for n in range(40)]
    positions = await asyncio.gather(*(queue.enqueue_announced(*job) for job in jobs))
    assert sorted(positions) == list(range(1, 41))
    for (job, _), position in zip(jobs, positions, strict=True):
        assert await queue.position(job.job_id) == position
        [event] = await stored(any_redis, redis_prefix, job.user_id)
        assert (event["job_id"], event["position"]) == (job.job_id, position)


async def test_announced_enqueues_go_on_after_redis_lost_its_scripts(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    assert await queue.enqueue_announced(*queued("a0", ANN)) == 1
    await any_redis.script_flush()  # what a restart without persistence does
    again = await asyncio.gather(*(queue.enqueue_announced(*queued(j, BOB)) for j in ("b0", "b1")))
    assert again == [2, 3]
    assert [e["job_id"] for e in await stored(any_redis, redis_prefix, BOB)] == ["b0", "b1"]


async def test_a_requeued_job_is_back_in_its_place_with_its_event_before_the_wake(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    for job_id in ("a0", "a1"):
        await queue.enqueue(queued(job_id, ANN)[0])
    claim = await queue.claim(BACKEND, lease_s=60)
    assert claim is not None and claim.job_id == "a0"
    events, moved = f"{{{redis_prefix}}}:events", f"{{{redis_prefix}}}:queue-moved"
    listener = any_redis.pubsub()
    await listener.subscribe(events, moved, queue.keys.channel)
    try:
        assert await queue.requeue_announced(*queued("a0", ANN)) == 1  # its old place
        heard = await channels_heard(listener, 3)
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
    assert heard == [events, moved, queue.keys.channel]
    assert [(e["job_id"], e["position"]) for e in await stored(any_redis, redis_prefix, ANN)] == [
        ("a0", 1)
    ]
    assert await queue.requeue_announced(*queued("b0", BOB)) == 2  # unknown: added
    assert await queue.position(JobId("b0")) == 2


async def test_a_reprioritized_job_announces_its_new_place_in_the_same_step(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    for job_id, user in (("a0", ANN), ("b0", BOB), ("b1", BOB)):
        await queue.enqueue(queued(job_id, user)[0])
    _, event = queued("b1", BOB)
    assert await queue.reprioritize(JobId("b1"), Priority.HIGH, announce=event) == 1
    # the same call resent (redis-py retries after a lost connection) announces nothing more
    assert await queue.reprioritize(JobId("b1"), Priority.HIGH, announce=event) == 1
    assert [(e["job_id"], e["position"]) for e in await stored(any_redis, redis_prefix, BOB)] == [
        ("b1", 1)
    ]
    claim = await queue.claim(BACKEND, lease_s=60)
    assert claim is not None and claim.job_id == "b1"
    listener = any_redis.pubsub()
    await listener.subscribe(f"{{{redis_prefix}}}:queue-moved")
    later = replace(event, at=event.at + timedelta(seconds=1))  # another move, another event
    await any_redis.delete(f"{{{redis_prefix}}}:queue-moved:gate")  # the first tick's window ended
    try:  # taken meanwhile: no event, but followers hear the queue moved
        assert await queue.reprioritize(JobId("b1"), Priority.LOW, announce=later) is None
        assert await channels_heard(listener, 1) == [f"{{{redis_prefix}}}:queue-moved"]
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
    assert len(await stored(any_redis, redis_prefix, BOB)) == 1


async def test_the_same_enqueue_sent_again_announces_nothing_more(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    """A pipeline resent after a lost connection runs the script again: the job keeps its
    one JobQueued, and a dispatcher that took it meanwhile does not see it queued again."""
    assert await queue.enqueue_announced(*queued("a0", ANN)) == 1
    assert await queue.enqueue_announced(*queued("a0", ANN)) == 1  # the resend
    claim = await queue.claim(BACKEND, lease_s=60)
    assert claim is not None and claim.job_id == "a0"
    assert await queue.enqueue_announced(*queued("a0", ANN)) == 0  # leased: left alone
    assert [e["job_id"] for e in await stored(any_redis, redis_prefix, ANN)] == ["a0"]
    assert await queue.position(JobId("a0")) is None


async def test_a_late_enqueue_of_a_job_already_sent_leaves_it_sent(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    """The sweeper may queue a job between its submitter's commit and enqueue, and a
    dispatcher may then send it and acknowledge it before the submitter's enqueue lands (or
    that enqueue is resent after a lost connection): the job must not wait in the queue
    again, nor its owner hear it is queued after it was sent."""
    job, event = queued("a0", ANN)
    assert await queue.enqueue(job) == 1  # the sweeper's put-back
    claim = await queue.claim(BACKEND, lease_s=60)
    assert claim is not None and await queue.ack(claim)  # sent
    assert await queue.enqueue_announced(job, event) == 0
    assert await queue.position(JobId("a0")) is None
    assert await queue.length() == 0
    assert await stored(any_redis, redis_prefix, ANN) == []


async def test_the_same_requeue_sent_again_changes_and_announces_nothing(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    """A call resent after a lost connection (redis-py retries) carries the same event: the
    job keeps one JobQueued for its return, and a dispatcher that claimed it meanwhile keeps
    it."""
    for job_id in ("a0", "a1"):
        await queue.enqueue(queued(job_id, ANN)[0])
    assert (await queue.claim(BACKEND, lease_s=60)) is not None
    back = queued("a0", ANN)
    assert await queue.requeue_announced(*back) == 1
    assert await queue.requeue_announced(*back) == 1  # the resend
    again = await queue.claim(BACKEND, lease_s=60)
    assert again is not None and again.job_id == "a0"
    assert await queue.requeue_announced(*back) == 0  # a late resend: the claim stands
    assert await queue.position(JobId("a0")) is None
    assert await queue.ack(again)
    assert [e["job_id"] for e in await stored(any_redis, redis_prefix, ANN)] == ["a0"]
    later = replace(back[1], at=back[1].at + timedelta(seconds=1))
    assert await queue.requeue_announced(back[0], later) == 1  # a new requeue is one
    assert len(await stored(any_redis, redis_prefix, ANN)) == 2
