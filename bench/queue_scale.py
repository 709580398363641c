"""Queue latency against queue length: enqueue, position and claim at 0, 10 000 and 100 000
waiting jobs, with the ratio to the empty queue (target: at most 1.2x at 100 000). The claim
is the dispatcher's: the first job and a backend's slot for it, in one script.

    python bench/queue_scale.py [--redis-url redis://127.0.0.1:6379/0] [--samples 2000]

Runs against a real Redis by default (`--redis-url memory://` for the in-process one), under a
prefix of its own that it deletes at the end. Each sample is one awaited call, timed on the
client; fills use batched enqueues and are not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial

from stargraph.broker.connection import connect_redis
from stargraph.broker.keys import SlotKeys
from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId
from stargraph.engine.slots import RedisSlotBook

BANDS = [Priority.URGENT, Priority.HIGH] + [Priority.NORMAL] * 6 + [Priority.LOW] * 2
GPU = BackendId("bench")


class Jobs:
    """Random arrivals: many users, mostly NORMAL."""

    def __init__(self, users: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._users = users
        self._count = 0
        self.waiting: list[JobId] = []

    def make(self, n: int) -> list[QueuedJob]:
        jobs = []
        for _ in range(n):
            self._count += 1
            job_id = JobId(f"bench-{self._count:07}")
            user = UserId(self._rng.randrange(self._users))
            jobs.append(QueuedJob(job_id, user, self._rng.choice(BANDS)))
        return jobs

    def pick(self) -> JobId:
        return self._rng.choice(self.waiting)


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    """Microseconds per call, each awaited alone."""
    took = []
    for call in calls:
        start = time.perf_counter()
        await call()
        took.append((time.perf_counter() - start) * 1e6)
    return took


async def fill(queue: RedisJobQueue, jobs: Jobs, target: int) -> None:
    while len(jobs.waiting) < target:
        batch = jobs.make(min(1000, target - len(jobs.waiting)))
        await queue.enqueue_many(batch)
        jobs.waiting += [j.job_id for j in batch]


async def measure(
    queue: RedisJobQueue, slots: RedisSlotBook, jobs: Jobs, samples: int
) -> dict[str, list[float]]:
    """Enqueue `samples` new jobs, ask `samples` positions, claim `samples` jobs; then put
    everything back as it was (untimed) so the length stays at its level."""
    new = jobs.make(samples)
    enqueue = await timed([partial(queue.enqueue, j) for j in new])
    jobs.waiting += [j.job_id for j in new]
    picks = [jobs.pick() for _ in range(samples)]
    position = await timed([partial(queue.position, p) for p in picks])
    claims: list[JobId] = []

    async def claim() -> None:
        taken = await queue.claim_into(GPU, samples, 60)
        assert taken.claim is not None
        claims.append(taken.claim.job_id)

    claim_us = await timed([claim] * samples)
    for job_id in claims:
        await queue.requeue(job_id)
        await slots.release(GPU, job_id)
    for job in new:
        await queue.remove(job.job_id)
    jobs.waiting = jobs.waiting[: len(jobs.waiting) - samples]
    return {"enqueue": enqueue, "position": position, "claim": claim_us}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(results: dict[int, dict[str, list[float]]]) -> None:
    base = results[min(results)]
    print(f"{'operation':<10} {'waiting':>8} {'p50 µs':>8} {'p99 µs':>8} {'p50 ×':>7} {'p99 ×':>7}")
    for op in ("enqueue", "position", "claim"):
        b50, b99 = percentile(base[op], 50), percentile(base[op], 99)
        for level, ops in results.items():
            p50, p99 = percentile(ops[op], 50), percentile(ops[op], 99)
            print(
                f"{op:<10} {level:>8} {p50:>8.0f} {p99:>8.0f} {p50 / b50:>7.2f} {p99 / b99:>7.2f}"
            )


async def side_by_side(
    queues: dict[int, tuple[RedisJobQueue, Jobs]],
    slots: dict[int, RedisSlotBook],
    samples: int,
    deadline: float,
) -> dict[int, dict[str, list[float]]]:
    """Rounds of 100 samples per level, levels in random order each round, so that the
    machine's noise falls on every level alike."""
    results: dict[int, dict[str, list[float]]] = {
        level: {"enqueue": [], "position": [], "claim": []} for level in queues
    }
    order = list(queues)
    for _ in range(max(1, samples // 100)):
        random.shuffle(order)
        for level in order:
            queue, jobs = queues[level]
            for op, took in (await measure(queue, slots[level], jobs, 100)).items():
                results[level][op] += took
        if time.monotonic() > deadline:
            print("stopped early: over --max-seconds")
            break
    return results


async def run(args: argparse.Namespace) -> None:
    memory = args.redis_url.startswith("memory")
    redis = connect_redis(None if memory else args.redis_url)
    run_id = uuid.uuid4().hex[:8]
    prefixes = {level: f"bench-{run_id}-{level}" for level in args.levels}
    queues = {
        level: (RedisJobQueue(redis, prefixes[level]), Jobs(args.users, args.seed + i))
        for i, level in enumerate(args.levels)
    }
    slots = {level: RedisSlotBook(redis, prefixes[level]) for level in args.levels}
    try:
        for level, (queue, jobs) in queues.items():
            await fill(queue, jobs, level)
            assert await queue.length() == level
            await measure(queue, slots[level], jobs, 100)  # warm-up
        deadline = time.monotonic() + args.max_seconds
        results = await side_by_side(queues, slots, args.samples, deadline)
    finally:
        for level, (queue, _) in queues.items():
            await redis.delete(*queue.keys.all, SlotKeys.for_prefix(prefixes[level]).version)
            await queue.aclose()
        await redis.aclose()
    where = "in-process Redis" if memory else args.redis_url
    print(f"queue_scale: {args.samples} samples per cell, {args.users} users, {where}")
    report(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[0, 10_000, 100_000]
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
