"""RedisJobQueue contract, run on the in-process Redis and on a real server."""

from __future__ import annotations

import asyncio
import random

from redis.asyncio import Redis

from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId
from tests.broker.clients import second_client

GPU = BackendId("http://gpu-1:8188")
A, B, C = UserId(1), UserId(2), UserId(3)


def job(name: str, user: UserId = A, priority: Priority = Priority.NORMAL) -> QueuedJob:
    return QueuedJob(JobId(name), user, priority)


async def next_claimed(queue: RedisJobQueue) -> str:
    claim = await queue.claim(GPU, 60)
    assert claim is not None
    return claim.job_id


async def claim_all(queue: RedisJobQueue) -> list[JobId]:
    taken = []
    while (claim := await queue.claim(GPU, 60)) is not None:
        taken.append(claim.job_id)
    return taken


async def waiting(queue: RedisJobQueue, names: list[str]) -> list[str]:
    """`names` sorted by their positions (asserting each one waits)."""
    found = await queue.positions([JobId(n) for n in names])
    assert None not in found.values()
    return sorted(names, key=lambda n: found[JobId(n)] or 0)


# --- order ----------------------------------------------------------------------------------


async def test_bands_run_urgent_high_normal_low_and_front_before_all(
    queue: RedisJobQueue,
) -> None:
    await queue.enqueue(job("low", priority=Priority.LOW))
    await queue.enqueue(job("normal", priority=Priority.NORMAL))
    await queue.enqueue(job("high", priority=Priority.HIGH))
    await queue.enqueue(job("urgent", priority=Priority.URGENT))
    await queue.enqueue(QueuedJob(JobId("front"), B, Priority.LOW, front=True))

    assert await claim_all(queue) == ["front", "urgent", "high", "normal", "low"]


async def test_heads_name_the_jobs_the_next_claims_take_without_taking_them(
    queue: RedisJobQueue,
) -> None:
    assert await queue.heads(2) == []
    await queue.enqueue_many([job("a0"), job("a1"), job("b0", B), job("c0", C, Priority.HIGH)])
    await queue.enqueue(QueuedJob(JobId("front"), B, Priority.LOW, front=True))

    seen = []
    while heads := await queue.heads(2):
        assert await queue.heads(2) == heads  # reading them changes nothing
        assert await next_claimed(queue) == heads[0]
        if len(heads) == 2:
            assert await queue.heads(1) == heads[1:]
        seen.append(heads[0])
    assert seen == ["front", "c0", "a0", "b0", "a1"]


async def test_a_newcomer_waits_behind_at_most_one_job_of_a_heavy_user(
    queue: RedisJobQueue,
) -> None:
    await queue.enqueue_many([job(f"a{i}") for i in range(50)])

    assert await queue.enqueue(job("b", B)) == 2
    order = await claim_all(queue)
    assert order[:3] == ["a0", "b", "a1"]
    assert order[3:] == [f"a{i}" for i in range(2, 50)]


async def test_users_take_turns_in_a_fixed_cycle(queue: RedisJobQueue) -> None:
    await queue.enqueue_many([job(f"a{i}", A) for i in range(4)])
    await queue.enqueue_many([job(f"b{i}", B) for i in range(3)])
    await queue.enqueue_many([job(f"c{i}", C) for i in range(2)])

    assert await claim_all(queue) == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "a3"]


async def test_a_user_served_in_this_lap_comes_back_in_the_next_one(
    queue: RedisJobQueue,
) -> None:
    await queue.enqueue_many([job("a0", A), job("b0", B), job("a1", A), job("a2", A)])
    assert await next_claimed(queue) == "a0"
    assert await next_claimed(queue) == "b0"

    await queue.enqueue(job("b1", B))  # B already had its turn in this lap: A goes first

    assert await claim_all(queue) == ["a1", "b1", "a2"]


async def test_a_user_not_yet_served_joins_at_the_end_of_the_current_lap(
    queue: RedisJobQueue,
) -> None:
    await queue.enqueue_many([job("b0", B), job("a0", A), job("a1", A), job("a2", A)])
    assert await next_claimed(queue) == "b0"

    await queue.enqueue(job("b1", B))  # A's turn in this lap comes first, then B again

    assert await claim_all(queue) == ["a0", "b1", "a1", "a2"]


async def test_positions_are_exact_and_shift_as_jobs_leave(queue: RedisJobQueue) -> None:
    assert await queue.enqueue_many([job("a0"), job("a1"), job("b0", B)]) == [1, 2, 2]
    assert await queue.positions([JobId("a0"), JobId("b0"), JobId("a1"), JobId("x")]) == {
        "a0": 1,
        "b0": 2,
        "a1": 3,
        "x": None,
    }
    await queue.claim(GPU, 60)

    assert await queue.position(JobId("a0")) is None
    assert await queue.position(JobId("a1")) == 2
    assert await queue.length() == 2


async def test_enqueue_is_idempotent(queue: RedisJobQueue) -> None:
    assert await queue.enqueue(job("a0")) == 1
    await queue.enqueue(job("b0", B))

    assert await queue.enqueue(job("a0", priority=Priority.URGENT)) == 1
    assert await queue.length() == 2
    claim = await queue.claim(GPU, 60)
    assert claim is not None
    assert await queue.enqueue(job("a0")) == 0  # leased: not queued a second time
    assert await queue.length() == 1


# --- leases ---------------------------------------------------------------------------------


async def test_claim_on_an_empty_queue_is_none(queue: RedisJobQueue) -> None:
    assert await queue.claim(GPU, 60) is None


async def test_requeue_puts_a_claimed_job_back_at_its_old_place(queue: RedisJobQueue) -> None:
    await queue.enqueue_many([job("a0"), job("b0", B), job("a1"), job("b1", B)])
    claim = await queue.claim(GPU, 60)
    assert claim is not None and claim.job_id == "a0" and claim.backend == GPU
    await queue.enqueue(job("c0", C))  # arrives while a0 is away

    assert await queue.requeue(claim.job_id)

    assert await waiting(queue, ["a0", "a1", "b0", "b1", "c0"]) == ["a0", "b0", "c0", "a1", "b1"]
    assert not await queue.ack(claim)  # the lease is gone


async def test_an_expired_lease_puts_the_job_back_at_its_old_place(queue: RedisJobQueue) -> None:
    await queue.enqueue_many([job("a0"), job("b0", B), job("a1")])
    short = await queue.claim(GPU, lease_s=0)
    long = await queue.claim(GPU, lease_s=600)
    assert short is not None and long is not None

    assert await queue.expire_leases() == [short.job_id]
    assert await queue.expire_leases() == []

    assert await waiting(queue, ["a0", "a1"]) == ["a0", "a1"]
    assert await queue.position(JobId("a0")) == 1
    assert not await queue.ack(short)
    assert await queue.ack(long)


async def test_ack_needs_the_lease_token(queue: RedisJobQueue) -> None:
    await queue.enqueue(job("a0"))
    claim = await queue.claim(GPU, 60)
    assert claim is not None
    forged = type(claim)(claim.job_id, claim.backend, "not-the-token")

    assert not await queue.ack(forged)
    assert await queue.ack(claim)
    assert not await queue.ack(claim)
    assert await queue.expire_leases() == []


async def test_an_acknowledged_job_the_engine_forgot_is_requeued_at_its_old_place(
    queue: RedisJobQueue,
) -> None:
    await queue.enqueue_many([job("a0"), job("a1"), job("b0", B)])
    claim = await queue.claim(GPU, 60)
    assert claim is not None and await queue.ack(claim)

    assert await queue.requeue(claim.job_id)

    assert await waiting(queue, ["a0", "a1", "b0"]) == ["a0", "b0", "a1"]
    assert not await queue.requeue(JobId("never-seen"))


async def test_concurrent_claims_never_hand_out_a_job_twice(
    any_redis: Redis, redis_prefix: str, queue: RedisJobQueue
) -> None:
    names = [f"j{i}" for i in range(300)]
    await queue.enqueue_many([job(n, UserId(i % 7)) for i, n in enumerate(names)])
    clients = [second_client(any_redis) for _ in range(4)]
    queues = [RedisJobQueue(c, redis_prefix) for c in clients]

    async def worker(q: RedisJobQueue) -> list[JobId]:
        got = []
        while (claim := await q.claim(GPU, 60)) is not None:
            got.append(claim.job_id)
            await asyncio.sleep(0)
        return got

    try:
        results = await asyncio.gather(*(worker(queues[i % 4]) for i in range(24)))
    finally:
        for c in clients:
            await c.aclose()
    taken = [name for got in results for name in got]
    assert len(taken) == len(set(taken)) == 300
    assert set(taken) == set(names)


# --- moves ----------------------------------------------------------------------------------


async def test_reprioritize_changes_band_or_moves_to_the_very_front(queue: RedisJobQueue) -> None:
    await queue.enqueue_many([job("a0"), job("a1"), job("b0", B), job("b1", B)])
    await queue.enqueue(job("u0", C, Priority.URGENT))

    assert await queue.reprioritize(JobId("b1"), Priority.HIGH) == 2
    assert await queue.reprioritize(JobId("a1"), Priority.LOW, to_front=True) == 1
    assert await queue.reprioritize(JobId("a1"), Priority.LOW, to_front=True) == 1
    assert await queue.reprioritize(JobId("nope"), Priority.HIGH) is None

    assert await claim_all(queue) == ["a1", "u0", "b1", "a0", "b0"]


async def test_lowering_then_raising_back_restores_the_old_place(queue: RedisJobQueue) -> None:
    names = ["a0", "b0", "a1", "b1", "a2", "b2"]
    await queue.enqueue_many([job(n, A if n[0] == "a" else B) for n in names])
    before = await waiting(queue, names)

    assert await queue.reprioritize(JobId("a0"), Priority.LOW) == 6
    assert await queue.reprioritize(JobId("a0"), Priority.NORMAL) == 1

    assert await waiting(queue, names) == before


async def test_a_leased_job_cannot_be_reprioritized(queue: RedisJobQueue) -> None:
    await queue.enqueue(job("a0"))
    await queue.claim(GPU, 60)

    assert await queue.reprioritize(JobId("a0"), Priority.URGENT) is None


async def test_remove_moves_the_users_later_jobs_up_one_turn(queue: RedisJobQueue) -> None:
    await queue.enqueue_many([job(f"a{i}") for i in range(3)] + [job(f"b{i}", B) for i in range(3)])

    assert await queue.remove(JobId("a0"))
    assert not await queue.remove(JobId("a0"))

    assert await queue.length() == 5
    assert await claim_all(queue) == ["a1", "b0", "a2", "b1", "b2"]  # a1 takes a0's turn


async def test_remove_forgets_a_leased_job(queue: RedisJobQueue) -> None:
    await queue.enqueue(job("a0"))
    claim = await queue.claim(GPU, lease_s=0)
    assert claim is not None

    assert await queue.remove(claim.job_id)

    assert await queue.expire_leases() == []
    assert not await queue.requeue(claim.job_id)
    assert await queue.length() == 0


# --- rebuild --------------------------------------------------------------------------------


def interleaved(seed: int, count: int) -> list[QueuedJob]:
    rng = random.Random(seed)
    bands = [Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.LOW]
    return [
        QueuedJob(JobId(f"j{i:03}"), UserId(rng.randrange(6)), rng.choice(bands))
        for i in range(count)
    ]


async def order_of(redis: Redis, queue: RedisJobQueue) -> list[str]:
    order: list[str] = []
    for member in await redis.zrange(queue.keys.order, 0, -1):
        assert isinstance(member, bytes)  # members alone, not decoded by the client
        order.append(member.decode()[33:])
    return order


async def test_emptying_redis_and_rebuilding_restores_the_same_order(
    any_redis: Redis, queue: RedisJobQueue
) -> None:
    jobs = interleaved(seed=7, count=120)
    for j in jobs:
        await queue.enqueue(j)
    await queue.reprioritize(jobs[5].job_id, Priority.URGENT, to_front=True)
    before = await order_of(any_redis, queue)

    await any_redis.delete(*queue.keys.all)
    await queue.rebuild(
        [j if j != jobs[5] else QueuedJob(j.job_id, j.user_id, j.priority, True) for j in jobs]
    )

    assert await order_of(any_redis, queue) == before


async def test_rebuild_after_claims_restores_the_order_of_alternating_arrivals(
    any_redis: Redis, queue: RedisJobQueue
) -> None:
    jobs = [
        job(f"{u}{i}", UserId(n), p)
        for i in range(6)
        for p in (Priority.HIGH, Priority.LOW)
        for n, u in enumerate("abc")
    ]
    await queue.enqueue_many(jobs)
    claimed = [await next_claimed(queue) for _ in range(8)]
    before = await order_of(any_redis, queue)

    await any_redis.delete(*queue.keys.all)
    await queue.rebuild([j for j in jobs if j.job_id not in claimed])

    assert await order_of(any_redis, queue) == before


async def test_rebuild_after_any_history_keeps_bands_and_each_users_order(
    any_redis: Redis, queue: RedisJobQueue
) -> None:
    jobs = interleaved(seed=11, count=150)
    await queue.enqueue_many(jobs)
    claimed = {await next_claimed(queue) for _ in range(37)}
    left = [j for j in jobs if j.job_id not in claimed]

    await any_redis.delete(*queue.keys.all)
    await queue.rebuild(left)

    after = await order_of(any_redis, queue)
    assert sorted(after) == sorted(j.job_id for j in left)
    placed = {j.job_id: j for j in left}
    assert [placed[JobId(n)].priority for n in after] == sorted(j.priority for j in left)
    for user in {j.user_id for j in left}:
        for band in Priority:
            mine = [j.job_id for j in left if j.user_id == user and j.priority == band]
            assert [n for n in after if n in mine] == mine


async def test_rebuild_replaces_waiting_jobs_and_leaves_leases_alone(
    queue: RedisJobQueue,
) -> None:
    await queue.enqueue_many([job("a0"), job("gone", B), job("a1")])
    claim = await queue.claim(GPU, 60)
    assert claim is not None

    await queue.rebuild([job("a0"), job("a1"), job("c0", C)])

    assert await queue.length() == 2
    assert await waiting(queue, ["a1", "c0"]) == ["a1", "c0"]
    assert await queue.position(JobId("gone")) is None
    assert await queue.ack(claim)
