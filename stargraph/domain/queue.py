"""The dispatch order: priority band, then fair turns between users, then arrival.

The queue holds job ids only; SQL stays the source of truth and the queue can be rebuilt
from the QUEUED jobs at any time. `FairTurns` states the order as a pure model (the Redis
queue implements the same rule; see `stargraph.broker.queue` for the reasoning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from stargraph.domain.backends import SlotCount
from stargraph.domain.types import BackendId, JobId, Priority, UserId

if TYPE_CHECKING:  # (events → jobs → queue: only the annotation needs it)
    from stargraph.domain.events import JobQueued


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """What the queue needs to place a job."""

    job_id: JobId
    user_id: UserId
    priority: Priority
    front: bool = False  # an admin moved it ahead of everything


@dataclass(frozen=True, slots=True)
class Claim:
    """A job leased to a backend; the lease returns it to its old place if it expires."""

    job_id: JobId
    backend: BackendId
    token: str


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """What `JobQueue.claim_into` did: the job it leased into a slot, if any."""

    claim: Claim | None  # None: the backend had no free slot, or nothing waited
    full: bool  # the backend had no free slot, so nothing was claimed
    count: SlotCount  # the backend's slots in use after it


class JobQueue(Protocol):
    async def enqueue(self, job: QueuedJob) -> int:
        """Add the job (no-op if present); returns its exact 1-based position (0 while the
        job is leased to a backend)."""
        ...

    async def enqueue_announced(self, job: QueuedJob, event: JobQueued) -> int:
        """`enqueue`, and publish `event` (as `EventBus.publish` with `queue_moved` does)
        with the job's position in it, in one atomic step; the dispatchers are told only
        after it. None of them can take the job before its event is out, so its owner never
        sees it leave the queue before it entered. A job the queue already knows (waiting,
        leased, or sent and acknowledged) is left alone and not announced again. Returns the
        position (0: leased or sent)."""
        ...

    async def position(self, job_id: JobId) -> int | None:
        """1 = next to be claimed; None when the job is not waiting."""
        ...

    async def positions(self, job_ids: list[JobId]) -> dict[JobId, int | None]: ...

    async def claim(self, backend: BackendId, lease_s: float) -> Claim | None:
        """Atomically lease the best waiting job to `backend`; None when the queue is empty."""
        ...

    async def claim_into(self, backend: BackendId, limit: int, lease_s: float) -> SlotClaim:
        """If fewer than `limit` of `backend`'s slots in the SlotBook are taken: lease the
        best waiting job and reserve one of them for it, in one atomic step. The reservation
        lapses with the lease unless it is confirmed (`SlotBook.confirm`)."""
        ...

    async def heads(self, n: int) -> list[JobId]:
        """The jobs the next `n` claims would take, in order (a hint: claims may race it)."""
        ...

    async def ack(self, claim: Claim) -> bool:
        """The job reached a final owner (accepted by the engine or ended): drop the lease."""
        ...

    async def requeue(self, job_id: JobId) -> bool:
        """Put a leased or forgotten job back at its old place; False if the queue does not
        know the job (then enqueue it)."""
        ...

    async def requeue_announced(self, job: QueuedJob, event: JobQueued) -> int:
        """Put a leased or parked job back at its old place (or add it, if the queue does
        not know it), publish `event` (its JobQueued, position filled in) and tick the
        queue-moved channel, then wake the dispatchers: one atomic step, so that the event
        precedes any JobDispatched of the job's next attempt. Returns its position."""
        ...

    async def reprioritize(
        self,
        job_id: JobId,
        priority: Priority,
        to_front: bool = False,
        announce: JobQueued | None = None,
    ) -> int | None:
        """Move a waiting job to another band (or the very front); returns its new position,
        None if it no longer waits. With `announce`, its JobQueued goes out with the new
        position in the same atomic step (and a job no longer waiting ticks queue-moved)."""
        ...

    async def remove(self, job_id: JobId) -> bool: ...

    async def length(self) -> int: ...

    async def count_held(self) -> int:
        """Jobs waiting or leased to a dispatcher."""
        ...

    async def expire_leases(self) -> list[JobId]:
        """Return expired leases to their places (housekeeping); returns the ids put back."""
        ...

    async def rebuild(self, jobs: list[QueuedJob]) -> None:
        """Replace the whole queue with `jobs`, in the order given (oldest first)."""
        ...

    async def wait_for_work(self, timeout_s: float | None) -> bool:
        """Block until something was enqueued or requeued (True) or `timeout_s` passed (False).

        A signal sent while nobody waited is kept for the next call; True may be spurious."""
        ...


FRONT_BAND = 0  # ahead of every priority band


def band_of(priority: Priority, front: bool = False) -> int:
    """0 for the very front, then 1..4 for URGENT, HIGH, NORMAL, LOW: lower runs first."""
    return FRONT_BAND if front else int(priority) + 1


Place = tuple[int, int]  # (lap, slot): one turn of one user inside a band


@dataclass(slots=True)
class _Entry:
    user: UserId
    seq: int  # arrival
    band: int
    place: Place


class FairTurns:
    """The dispatch order as a pure model: waiting jobs, claims and the moves of the queue.

    Order key (band, lap, slot, job id). Inside a band each waiting user owns a slot and its
    jobs sit on consecutive laps at that slot, from the first place after the band's cursor
    (the place of the last job claimed there), in arrival order. A user entering a band takes
    a fresh slot (end of the current lap), or its slot again (next lap) when it already had a
    turn in the current lap. Claimed jobs may come back at their old place (`requeue`).
    """

    def __init__(self) -> None:
        self._seq = 0
        self._waiting: dict[JobId, _Entry] = {}
        self._claimed: dict[JobId, _Entry] = {}
        self._members: dict[tuple[int, UserId], set[JobId]] = {}
        self._cursor: dict[int, Place] = {}
        self._served: dict[tuple[int, UserId], Place] = {}
        self._descending: list[JobId] | None = None  # cache; claims never move other jobs

    def key(self, job_id: JobId) -> tuple[int, int, int, str]:
        entry = self._waiting[job_id]
        return (entry.band, *entry.place, job_id)

    def order(self) -> list[JobId]:
        """The waiting jobs, first to be claimed first."""
        return sorted(self._waiting, key=self.key)

    def enqueue(self, job: QueuedJob) -> None:
        if job.job_id in self._waiting or job.job_id in self._claimed:
            return
        self._seq += 1
        entry = _Entry(job.user_id, self._seq, band_of(job.priority, job.front), (0, 0))
        self._seat(job.job_id, entry)

    def claim(self) -> JobId | None:
        if not self._waiting:
            return None
        if self._descending is None:
            self._descending = sorted(self._waiting, key=self.key, reverse=True)
        job_id = self._descending.pop()
        entry = self._unlist(job_id, keep_cache=True)
        if entry.band != FRONT_BAND:
            self._cursor[entry.band] = max(self._cursor_of(entry.band), entry.place)
            served = self._served.get((entry.band, entry.user), (-1, -1))
            self._served[(entry.band, entry.user)] = max(served, entry.place)
        self._claimed[job_id] = entry
        return job_id

    def requeue(self, job_id: JobId) -> None:
        """A claimed job back at its old place."""
        entry = self._claimed.pop(job_id)
        self._list(job_id, entry)

    def remove(self, job_id: JobId) -> None:
        if job_id in self._claimed:
            del self._claimed[job_id]
            return
        entry = self._unlist(job_id)
        if entry.band != FRONT_BAND and entry.place > self._cursor_of(entry.band):
            turns = self._turns(entry.band, entry.user)
            self._lay_out(entry.band, entry.user, turns, entry.place[1])

    def reprioritize(self, job_id: JobId, priority: Priority, to_front: bool = False) -> None:
        band = band_of(priority, to_front)
        entry = self._waiting[job_id]
        if entry.band != band:
            self.remove(job_id)
            entry.band = band
            self._seat(job_id, entry)

    def _cursor_of(self, band: int) -> Place:
        return self._cursor.get(band, (0, 0))

    def _list(self, job_id: JobId, entry: _Entry) -> None:
        self._descending = None
        self._waiting[job_id] = entry
        self._members.setdefault((entry.band, entry.user), set()).add(job_id)

    def _unlist(self, job_id: JobId, keep_cache: bool = False) -> _Entry:
        if not keep_cache:
            self._descending = None
        entry = self._waiting.pop(job_id)
        self._members[(entry.band, entry.user)].discard(job_id)
        return entry

    def _turns(self, band: int, user: UserId) -> list[JobId]:
        """The user's jobs placed after the band's cursor, in order."""
        cursor = self._cursor_of(band)
        ids = self._members.get((band, user), set())
        return sorted((j for j in ids if self._waiting[j].place > cursor), key=self.key)

    def _seat(self, job_id: JobId, entry: _Entry) -> None:
        if entry.band == FRONT_BAND:
            entry.place = (0, entry.seq)
            self._list(job_id, entry)
            return
        turns = self._turns(entry.band, entry.user)
        slot = self._waiting[turns[0]].place[1] if turns else self._join_slot(entry)
        self._list(job_id, entry)
        turns.append(job_id)
        turns.sort(key=lambda j: self._waiting[j].seq)
        self._lay_out(entry.band, entry.user, turns, slot)

    def _join_slot(self, entry: _Entry) -> int:
        served = self._served.get((entry.band, entry.user))
        if served is not None and served[0] == self._cursor_of(entry.band)[0]:
            return served[1]
        self._seq += 1
        return self._seq

    def _lay_out(self, band: int, user: UserId, turns: list[JobId], slot: int) -> None:
        lap, cursor_slot = self._cursor_of(band)
        first = lap if slot > cursor_slot else lap + 1
        self._descending = None
        for i, job_id in enumerate(turns):
            self._waiting[job_id].place = (first + i, slot)
