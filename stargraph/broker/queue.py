"""RedisJobQueue: the fair dispatch order in one Redis sorted set, leases beside it.

Encoding. Waiting jobs live in ONE sorted set whose scores are all 0; the members are
fixed-width strings `band(1) lap(16) slot(16) job_id` (zero-padded decimals), so Redis orders
them by bytes and `ZRANK` is the exact 0-based position however many jobs wait. Doubles are
never involved: no precision limit at 2^53, no ties. Band "0" is the very front (admin),
"1".."4" are URGENT, HIGH, NORMAL, LOW. A hash keeps each job's member, user and arrival seq.

Fair turns (round robin inside a band). Every user waiting in a band owns a *slot*; a *lap* is
one pass over the slots in slot order, and a place is (lap, slot). A user's waiting jobs in a
band sit on consecutive laps at their slot, in arrival order, starting at the first place
after the band's cursor (the place of the last job claimed there). So the claims of a band
visit the waiting users in a fixed cyclic order, one job each per lap. A user entering a band
(no job waiting there) gets a fresh slot from the arrival counter, i.e. the end of the current
lap, after everyone who came before; or, if it already had a turn in the current lap, its
old slot again, i.e. the next lap. Removing or moving a job re-lays its user's remaining jobs
there, so they move up one turn each. `stargraph.domain.queue.FairTurns` is the same rule in
pure Python (the tests hold the two to the same order after every step).

Why it is fair (sketch). (1) Take a user u claimed at (l, s) whose next job already waited;
that one is claimed at (l+1, s). Another user v gets at most one claim in between: while v
waits, its places are one per lap on one slot t, and only (l, t) with t > s or (l+1, t) with
t < s lies in between, not both; if v leaves and returns, it comes back on its old slot one lap
after a turn it had in the current lap, or on a fresh slot at the end of the current lap, so
again at most one of its turns lies in between. With k users waiting, each gets every k-th
turn. (2) A user B entering a band lands at (C, fresh) or at (C+1, its old slot ≤ cursor
slot), C being the cursor's lap. Every waiting job of a user A is after the cursor, one per
lap on A's slot a, so A's second job is on lap C+2, or on C+1 with a > cursor slot: after B's.
At most one of A's waiting jobs runs before B's. (The rule "turn = max(user's last turn + 1,
last claimed turn), then arrival" breaks both: after b0 ran before a0, a new b1 lands after a1.)

Leases. `claim` moves the first job into a lease (deadline on the Redis server's clock, so
processes need no shared clock); `ack` parks it (kept a while so that a job the engine forgets
can be requeued); `requeue` and expired leases put it back at its old place, which is at or
before the cursor, i.e. ahead of every fair turn of its band.

Rebuild. `rebuild` forgets the waiting jobs and replays the given ones in arrival order. That
restores the exact order when nothing but arrivals happened since the queue was empty, or when
the arrivals already took turns (then claims took them in arrival order); in any case it keeps
the bands, each user's own order and the fairness properties. No rebuild from the job rows
alone can do better: after user A's a1 was claimed, the rows "a2, then B's b1" must run b1
first (A just had its turn), while the same two rows with no a1 before them must run a2 first
(arrival); the rows cannot tell the two apart.

Every change is one Lua script (`lua/queue_*.lua` with the shared `lua/queue_lib.lua`,
`lua/slots_lib.lua` and `lua/events_lib.lua`), registered once per client; every key comes
from `QueueKeys` (and, for `claim_into`, `SlotKeys`; for `enqueue_announced`, the owner's
event stream) and shares one hash tag.
`wait_for_work` listens on a pub/sub channel that the scripts publish to.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from stargraph.broker.events import RedisEventBus
from stargraph.broker.keys import QueueKeys, SlotKeys
from stargraph.broker.pipelined import PipelinedScript
from stargraph.domain.backends import SlotCount
from stargraph.domain.events import JobQueued
from stargraph.domain.queue import Claim, QueuedJob, SlotClaim, band_of
from stargraph.domain.types import BackendId, JobId, Priority

_LUA = files("stargraph.broker").joinpath("lua")
_LIB = _LUA.joinpath("queue_lib.lua").read_text()
_SCRIPTS = (
    "enqueue",
    "enqueue_announced",
    "positions",
    "claim",
    "claim_into",
    "head",
    "ack",
    "requeue",
    "requeue_announced",
    "expire",
    "reprioritize",
    "remove",
    "clear",
)
_LIBS = "\n".join(
    _LUA.joinpath(f"{lib}.lua").read_text() for lib in ("slots_lib", "events_lib", "announce_lib")
)
_SOURCES = {
    name: _LIB + "\n" + _LIBS + "\n" + _LUA.joinpath(f"queue_{name}.lua").read_text()
    for name in _SCRIPTS
}
_EXPIRE_BATCH = 1000
_REPLAY_BATCH = 1000  # jobs per script call: keeps each call short (Redis runs one at a time)


def _triples(jobs: Sequence[QueuedJob]) -> list[str]:
    args: list[str] = []
    for job in jobs:
        args += [job.job_id, str(int(job.user_id)), str(band_of(job.priority, job.front))]
    return args


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisJobQueue:
    """The JobQueue port on Redis; any number of processes may share one prefix.

    `listener` is the client for the pub/sub connection of `wait_for_work` (defaults to
    `redis`; pub/sub reads are not cut by the socket timeout). `park_s` is how long an
    acknowledged job can still be requeued at its old place. `events`, the bus on the same
    Redis, is what `enqueue_announced` publishes through.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        listener: Redis | None = None,
        park_s: float = 86_400.0,
        events: RedisEventBus | None = None,
    ) -> None:
        self._redis = redis
        self._events = events
        self.keys = QueueKeys.for_prefix(prefix)
        self._slots = SlotKeys.for_prefix(prefix)
        self._park_ms = round(park_s * 1000)
        self._scripts = {name: redis.register_script(src) for name, src in _SOURCES.items()}
        # every submission runs it: concurrent ones share round trips
        self._enqueue_announced = PipelinedScript(
            redis, _SOURCES["enqueue_announced"], name="enqueue"
        )
        self._signal = _WorkSignal(listener or redis, self.keys.channel)

    async def _run(self, name: str, *args: str | int, more_keys: Sequence[str] = ()) -> Any:
        script: AsyncScript = self._scripts[name]
        keys, argv = self._call(args, more_keys)
        return await script(keys=keys, args=argv)

    def _call(
        self, args: Sequence[str | int], more_keys: Sequence[str] = ()
    ) -> tuple[list[str], list[str | int]]:
        """A queue script's keys and arguments: the queue's keys, then `more_keys`; the
        dispatchers' channel, then `args`."""
        return [*self.keys.scripted, *more_keys], [self.keys.channel, *args]

    async def enqueue(self, job: QueuedJob) -> int:
        """Add the job (no-op if known); its 1-based position, 0 while it is leased."""
        return int((await self._run("enqueue", *_triples([job])))[0])

    async def enqueue_announced(self, job: QueuedJob, event: JobQueued) -> int:
        """`JobQueue.enqueue_announced`; needs the `events` bus given at construction."""
        stream, gate, announcement = self._announcement(event)
        keys, args = self._call([*_triples([job]), *announcement], (stream, gate))
        return int(await self._enqueue_announced(keys, args))

    async def requeue_announced(self, job: QueuedJob, event: JobQueued) -> int:
        """`JobQueue.requeue_announced`; needs the `events` bus given at construction."""
        stream, gate, announcement = self._announcement(event)
        args = (*_triples([job]), *announcement)
        more_keys = (stream, self.keys.announced(job.job_id), gate)
        return int(await self._run("requeue_announced", *args, more_keys=more_keys))

    def _announcement(self, event: JobQueued) -> tuple[str, str, list[str | int]]:
        if self._events is None:
            raise RuntimeError("this RedisJobQueue was built without its event bus")
        return self._events.announcement(event)

    async def enqueue_many(self, jobs: Sequence[QueuedJob]) -> list[int]:
        """`enqueue` for many jobs in one atomic call; each one's position when it was added."""
        if not jobs:
            return []
        result = await self._run("enqueue", *_triples(jobs))
        return [int(p) for p in result]

    async def position(self, job_id: JobId) -> int | None:
        """1 = next to be claimed; None when the job is not waiting."""
        return (await self.positions([job_id]))[job_id]

    async def positions(self, job_ids: list[JobId]) -> dict[JobId, int | None]:
        if not job_ids:
            return {}
        found = await self._run("positions", *job_ids)
        return {
            job_id: None if p is None else int(p) for job_id, p in zip(job_ids, found, strict=True)
        }

    async def claim(self, backend: BackendId, lease_s: float) -> Claim | None:
        """Atomically lease the first waiting job to `backend`; None when nothing waits."""
        token = uuid.uuid4().hex
        job = await self._run("claim", token, max(0, round(lease_s * 1000)))
        if job is None:
            return None
        return Claim(JobId(_text(job)), backend, token)

    async def claim_into(self, backend: BackendId, limit: int, lease_s: float) -> SlotClaim:
        """`JobQueue.claim_into`, with the slots of `RedisSlotBook` on the same prefix."""
        token = uuid.uuid4().hex
        slots = (self._slots.version, self._slots.of(backend))
        job, count, version, full = await self._run(
            "claim_into", token, max(1, round(lease_s * 1000)), limit, more_keys=slots
        )
        claim = None if job is None else Claim(JobId(_text(job)), backend, token)
        return SlotClaim(claim, bool(full), SlotCount(int(count), int(version)))

    async def heads(self, n: int) -> list[JobId]:
        """The jobs the next `n` claims would take, in order, without claiming them."""
        return [JobId(_text(job)) for job in await self._run("head", n)]

    async def ack(self, claim: Claim) -> bool:
        """End the lease if `claim` still holds it (False after it expired or was removed)."""
        return bool(await self._run("ack", claim.job_id, claim.token))

    async def requeue(self, job_id: JobId) -> bool:
        """Put a leased or acknowledged job back at its old place; True if it now waits,
        False if the queue does not know it (enqueue it instead)."""
        return bool(await self._run("requeue", job_id))

    async def reprioritize(
        self,
        job_id: JobId,
        priority: Priority,
        to_front: bool = False,
        announce: JobQueued | None = None,
    ) -> int | None:
        """Move a waiting job to `priority`'s band, after its fair turn there and among its
        user's jobs by arrival, or to the very front; its new position, None if not waiting.
        With `announce` (needs the `events` bus), its event goes out with the new position in
        the same step."""
        band = str(band_of(priority, to_front))
        if announce is None:
            found = await self._run("reprioritize", job_id, band)
        else:
            stream, gate, announcement = self._announcement(announce)
            args = (job_id, band, str(int(announce.user_id)), *announcement)
            more_keys = (stream, self.keys.announced(job_id), gate)
            found = await self._run("reprioritize", *args, more_keys=more_keys)
        return None if found is None else int(found)

    async def remove(self, job_id: JobId) -> bool:
        """Forget the job (waiting, leased or parked); True if the queue knew it."""
        return bool(await self._run("remove", job_id))

    async def length(self) -> int:
        return int(await self._redis.zcard(self.keys.order))

    async def count_held(self) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.order)
            pipe.zcard(self.keys.leases)
            waiting, leased = await pipe.execute()
        return int(waiting) + int(leased)

    async def expire_leases(self) -> list[JobId]:
        """Put jobs whose lease ran out back at their old places; returns their ids."""
        found = await self._run("expire", self._park_ms, _EXPIRE_BATCH)
        return [JobId(_text(job)) for job in found]

    async def rebuild(self, jobs: list[QueuedJob]) -> None:
        """Replace every waiting job by `jobs`, replayed in the given order (oldest first).

        Clearing is one atomic step; the replay runs in batches (each atomic) so that a large
        queue never holds Redis for long. Jobs under a lease are left to it; an acknowledged
        one goes back to its old place.
        """
        await self._run("clear")
        for start in range(0, len(jobs), _REPLAY_BATCH):
            await self.enqueue_many(jobs[start : start + _REPLAY_BATCH])

    async def wait_for_work(self, timeout_s: float | None) -> bool:
        """Wait until any process enqueues or requeues (True) or `timeout_s` passes (False).

        A signal that came while nobody waited is kept for the next call, so "claim found
        nothing, then wait" loses no wake-up. It may return True with nothing to claim (right
        after (re)subscribing, or when another process claimed first).
        """
        return await self._signal.wait(timeout_s)

    async def aclose(self) -> None:
        """Stop listening for work (the clients stay open: they belong to the caller)."""
        await self._signal.aclose()


class _WorkSignal:
    """One pub/sub subscription per queue object, turned into an asyncio.Event."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def wait(self, timeout_s: float | None) -> bool:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"wake:{self._channel}")
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except TimeoutError:
                return False
        self._event.clear()
        return True

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        # "subscribe": whatever was published before now may be waiting
                        if message["type"] in ("message", "subscribe"):
                            self._event.set()
                            delay = 0.05
            except (RedisError, OSError):
                await asyncio.sleep(delay)  # reconnect back-off; the next subscribe wakes
                delay = min(delay * 2, 2.0)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
