"""Exact positions with 10 000 waiting jobs of 100 users, against the pure model."""

from __future__ import annotations

import random

from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.queue import FairTurns, QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId

BANDS = [Priority.URGENT, Priority.HIGH] + [Priority.NORMAL] * 6 + [Priority.LOW] * 2


def arrivals(rng: random.Random, start: int, count: int) -> list[QueuedJob]:
    users = [UserId(u) for u in range(100)]
    return [
        QueuedJob(JobId(f"job-{i:05}"), rng.choice(users), rng.choice(BANDS), rng.random() < 0.001)
        for i in range(start, start + count)
    ]


async def assert_positions_match(queue: RedisJobQueue, model: FairTurns) -> None:
    order = model.order()
    found = await queue.positions(order)
    assert [found[job_id] for job_id in order] == list(range(1, len(order) + 1))
    assert await queue.length() == len(order)


async def test_positions_stay_exact_with_ten_thousand_jobs(queue: RedisJobQueue) -> None:
    rng = random.Random(2024)
    model = FairTurns()
    jobs = arrivals(rng, 0, 10_000)
    for start in range(0, len(jobs), 500):
        batch = jobs[start : start + 500]
        for job in batch:
            model.enqueue(job)
        await queue.enqueue_many(batch)
    await assert_positions_match(queue, model)

    for _ in range(700):
        claim = await queue.claim(BackendId("gpu"), 60)
        assert claim is not None and claim.job_id == model.claim()
    for job_id in rng.sample(model.order(), 100):
        model.remove(job_id)
        await queue.remove(job_id)
    for job_id in rng.sample(model.order(), 100):
        priority, front = rng.choice(BANDS), rng.random() < 0.05
        model.reprioritize(job_id, priority, front)
        await queue.reprioritize(job_id, priority, front)
    more = arrivals(rng, 10_000, 1_000)
    for job in more:
        model.enqueue(job)
    await queue.enqueue_many(more)

    await assert_positions_match(queue, model)
