"""Fair turns, checked as properties of the claim sequence over random interleavings, and the
Redis queue checked against the pure model `FairTurns` step by step (both kinds of Redis)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from stargraph.broker.queue import RedisJobQueue
from stargraph.domain.queue import FairTurns, QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId

GPU = BackendId("gpu")
BANDS = st.sampled_from([Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW])
ENQUEUE = st.tuples(st.just("enqueue"), st.integers(0, 4), BANDS)
CLAIM = st.tuples(st.just("claim"))
Step = tuple[Any, ...]
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass
class Job:
    user: int
    band: Priority
    arrived: int  # on the history's clock
    claimed: int = -1  # index in the claim sequence
    claimed_at: int = -1  # on the history's clock
    waiting_then: dict[int, set[str]] = field(default_factory=dict)  # user -> same-band jobs


class History:
    """What happened, to check the claim sequence against the fairness promises."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.claims: list[str] = []
        self.clock = 0

    def waiting(self, band: Priority) -> list[str]:
        return [n for n, j in self.jobs.items() if j.band == band and j.claimed < 0]

    def arrive(self, name: str, user: int, band: Priority) -> None:
        snapshot: dict[int, set[str]] = {}
        for other in self.waiting(band):
            snapshot.setdefault(self.jobs[other].user, set()).add(other)
        self.clock += 1
        self.jobs[name] = Job(user, band, self.clock, waiting_then=snapshot)

    def claim(self, name: str) -> None:
        best = min(j.band for j in self.jobs.values() if j.claimed < 0)
        assert self.jobs[name].band == best, "a lower band ran before a higher one"
        self.clock += 1
        self.jobs[name].claimed = len(self.claims)
        self.jobs[name].claimed_at = self.clock
        self.claims.append(name)


async def play(queue: RedisJobQueue, steps: list[Step]) -> History:
    history = History()
    for i, step in enumerate(steps):
        if step[0] == "enqueue":
            name = f"j{i}"
            history.arrive(name, step[1], step[2])
            await queue.enqueue(QueuedJob(JobId(name), UserId(step[1]), step[2]))
        elif (claim := await queue.claim(GPU, 60)) is not None:
            history.claim(claim.job_id)
    while (claim := await queue.claim(GPU, 60)) is not None:
        history.claim(claim.job_id)
    assert len(history.claims) == len(history.jobs)
    return history


def check_newcomers_pass_all_but_one_job_of_each_user(history: History) -> None:
    for name, job in history.jobs.items():
        if job.user in job.waiting_then:
            continue  # not a newcomer: the user already had a job waiting in this band
        for user, theirs in job.waiting_then.items():
            ahead = [o for o in theirs if history.jobs[o].claimed < job.claimed]
            assert len(ahead) <= 1, f"{name} of user {job.user} waited behind {ahead} of {user}"


def check_every_kth_turn(history: History) -> None:
    """Between two turns of a user who kept waiting, nobody else had two turns."""
    for band in Priority:
        claims = [n for n in history.claims if history.jobs[n].band == band]
        last_turn: dict[int, int] = {}
        for index, name in enumerate(claims):
            job = history.jobs[name]
            previous = last_turn.get(job.user)
            last_turn[job.user] = index
            if previous is None or job.arrived > history.jobs[claims[previous]].claimed_at:
                continue  # the user was not waiting all along
            between = Counter(history.jobs[n].user for n in claims[previous + 1 : index])
            assert max(between.values(), default=0) <= 1, (job.user, claims[previous:index])


def check_each_users_own_order(history: History) -> None:
    for band in Priority:
        for user in {j.user for j in history.jobs.values()}:
            mine = [n for n, j in history.jobs.items() if j.user == user and j.band == band]
            assert [n for n in history.claims if n in mine] == mine


@SETTINGS
@given(steps=st.lists(st.one_of(ENQUEUE, ENQUEUE, CLAIM), max_size=80))
async def test_claims_follow_fair_turns(any_redis: Redis, steps: list[Step]) -> None:
    queue = RedisJobQueue(any_redis, f"t{uuid.uuid4().hex[:12]}")
    try:
        history = await play(queue, steps)
    finally:
        await any_redis.delete(*queue.keys.all)
    check_newcomers_pass_all_but_one_job_of_each_user(history)
    check_every_kth_turn(history)
    check_each_users_own_order(history)


async def test_fifty_jobs_of_one_user_and_one_of_another(any_redis: Redis) -> None:
    steps = [("enqueue", 1, Priority.NORMAL)] * 50 + [("claim",)] * 7
    steps += [("enqueue", 2, Priority.NORMAL)]
    queue = RedisJobQueue(any_redis, f"t{uuid.uuid4().hex[:12]}")
    try:
        history = await play(queue, steps)
    finally:
        await any_redis.delete(*queue.keys.all)
    newcomer = history.claims.index("j57")
    assert history.claims[newcomer - 1 : newcomer + 2] == ["j6", "j57", "j7"]  # next, then A
    check_newcomers_pass_all_but_one_job_of_each_user(history)


OPERATIONS = st.lists(
    st.one_of(
        ENQUEUE,
        ENQUEUE,
        ENQUEUE,
        CLAIM,
        st.tuples(st.just("requeue"), st.integers(0, 100)),
        st.tuples(st.just("remove"), st.integers(0, 100)),
        st.tuples(st.just("move"), st.integers(0, 100), BANDS, st.booleans()),
    ),
    max_size=70,
)


async def apply(
    queue: RedisJobQueue, model: FairTurns, step: Step, i: int, claimed: list[JobId]
) -> None:
    waiting = model.order()
    if step[0] == "enqueue":
        queued = QueuedJob(JobId(f"j{i}"), UserId(step[1]), step[2], front=(i % 17 == 0))
        model.enqueue(queued)
        await queue.enqueue(queued)
    elif step[0] == "claim":
        expected = model.claim()
        claim = await queue.claim(GPU, 60)
        assert (claim and claim.job_id) == expected
        if expected:
            claimed.append(expected)
    elif step[0] == "requeue" and claimed:
        job_id = claimed.pop(step[1] % len(claimed))
        model.requeue(job_id)
        assert await queue.requeue(job_id)
    elif step[0] == "remove" and waiting:
        job_id = waiting[step[1] % len(waiting)]
        model.remove(job_id)
        assert await queue.remove(job_id)
    elif step[0] == "move" and waiting:
        job_id = waiting[step[1] % len(waiting)]
        model.reprioritize(job_id, step[2], step[3])
        assert await queue.reprioritize(job_id, step[2], step[3]) is not None


@SETTINGS
@given(steps=OPERATIONS)
async def test_redis_order_equals_the_model_after_every_step(
    any_redis: Redis,
    steps: list[Step],
) -> None:
    queue = RedisJobQueue(any_redis, f"t{uuid.uuid4().hex[:12]}")
    model = FairTurns()
    claimed: list[JobId] = []
    try:
        for i, step in enumerate(steps):
            await apply(queue, model, step, i, claimed)
            order = model.order()
            found = await queue.positions(order)
            assert [found[j] for j in order] == list(range(1, len(order) + 1))
            assert await queue.length() == len(order)
    finally:
        await any_redis.delete(*queue.keys.all)
