"""The subscription streams tell every waiting follower its new place when the queue moves,
and all the followers in a process share one queue read per move."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from stargraph.domain import events as ev
from stargraph.domain.jobs import JobStatus
from stargraph.domain.types import JobId, UserId
from stargraph.schema.streams import job_stream
from tests.iterators import close

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FOLLOWERS = 300  # more than a Redis client's connections


class Queue:
    def __init__(self, places: dict[JobId, int]) -> None:
        self.places = places
        self.reads: list[int] = []  # how many jobs each read asked for

    async def positions(self, job_ids: list[JobId]) -> dict[JobId, int | None]:
        self.reads.append(len(job_ids))
        await asyncio.sleep(0)  # a round trip
        return {job_id: self.places.get(job_id) for job_id in job_ids}


class Events:
    def __init__(self, expected: int) -> None:
        self.followers: list[asyncio.Queue[ev.QueueMoved]] = []
        self._expected = expected
        self.all_following = asyncio.Event()

    async def last_cursor(self, user_id: UserId) -> str:
        return "0-0"

    async def follow_job(
        self, user_id: UserId, job_id: JobId, after: str | None = None
    ) -> AsyncIterator[ev.QueueMoved]:
        ticks: asyncio.Queue[ev.QueueMoved] = asyncio.Queue()
        self.followers.append(ticks)
        if len(self.followers) == self._expected:
            self.all_following.set()
        while True:
            yield await ticks.get()

    def queue_moved(self) -> None:
        for ticks in self.followers:
            ticks.put_nowait(ev.QueueMoved(at=NOW, cursor="5-0"))


class Jobs:
    async def get(self, principal: Any, job_id: JobId) -> Any:
        return SimpleNamespace(
            id=job_id, user_id=principal.user_id, status=JobStatus.QUEUED, is_terminal=False,
            created_at=NOW, finished_at=None, started_at=None, dispatched_at=None,
        )  # fmt: skip


async def test_every_waiting_follower_gets_its_new_place_from_one_queue_read() -> None:
    ids = [JobId(f"job-{n}") for n in range(FOLLOWERS)]
    queue, events = Queue({job_id: n + 2 for n, job_id in enumerate(ids)}), Events(FOLLOWERS)
    api = SimpleNamespace(jobs=Jobs(), events=events, queue=queue)
    streams = [job_stream(api, SimpleNamespace(user_id=UserId(n)), job_id)  # type: ignore[arg-type]
               for n, job_id in enumerate(ids)]  # fmt: skip
    async with asyncio.timeout(20):
        firsts = await asyncio.gather(*(anext(s) for s in streams))
        assert [e.position for e in firsts] == [n + 2 for n in range(FOLLOWERS)]  # type: ignore[attr-defined]
        nexts = [asyncio.ensure_future(anext(s)) for s in streams]
        await events.all_following.wait()
        queue.places = {job_id: n + 1 for n, job_id in enumerate(ids)}
        reads_before = len(queue.reads)

        events.queue_moved()
        moved = await asyncio.gather(*nexts)

    assert [(e.job_id, e.position, e.cursor) for e in moved] == [  # type: ignore[attr-defined]
        (job_id, n + 1, "5-0") for n, job_id in enumerate(ids)
    ]
    assert queue.reads[reads_before:] == [FOLLOWERS]  # one read for all of them
    for stream in streams:
        await close(stream)
